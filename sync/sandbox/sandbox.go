// Package sandbox runs loopback fakes of EverReal and EstateGuru, faithful to
// the provider documents in shared/seeds/, for tests, benchmarks and
// `syncer demo`.
//
// Each provider listens on its own 127.0.0.1 port. The fakes keep their
// accounts and tokens in maps behind one mutex, so they are safe for
// concurrent use and answer in constant time per request however many tokens
// were issued. Faults (canned answers, delays, hangs, oversized bodies, lost
// answers) can be queued per endpoint with Inject.
//
// The quirks are the real ones: EverReal's token endpoint takes JSON only,
// answers a bad user with 403 invalid_grant, gives expires_in as a number on
// password grants and as a string on refresh grants, never rotates its refresh
// tokens and keeps at most 50 per client and user. EstateGuru rotates its
// refresh token on every refresh, refuses a rotated one with 400
// invalid_grant, and prefixes the requestId it echoes with 33 random
// characters.
package sandbox

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default client credentials, accepted when Options leaves them empty.
const (
	DefaultEverRealClientID       = "everreal-sandbox-client"
	DefaultEverRealClientSecret   = "everreal-sandbox-secret"
	DefaultEstateGuruClientID     = "estateguru-sandbox-client"
	DefaultEstateGuruClientSecret = "estateguru-sandbox-secret"
)

// Provider names, as RevokeAll takes them.
const (
	EverReal   = "everreal"
	EstateGuru = "estateguru"
)

// Default lifetimes and limits, as the providers document them.
const (
	DefaultEverRealAccessTTL   = time.Hour
	DefaultEstateGuruAccessTTL = 43199 * time.Second
	DefaultRefreshTTL          = 30 * 24 * time.Hour
	// EverRealMaxRefreshTokens is how many refresh tokens EverReal keeps per
	// client and user; issuing one more deletes the oldest.
	EverRealMaxRefreshTokens = 50
	// EverRealRateLimitPerMinute is what X-RateLimit-Limit says by default.
	EverRealRateLimitPerMinute = 300
	// EstateGuruRequestIDPrefixLen is how many random characters EstateGuru
	// puts before the requestId it echoes in userInvestments (33 in the
	// seed's example: a UUID cut short).
	EstateGuruRequestIDPrefixLen = 33
)

// Options configures a sandbox. The zero value works.
type Options struct {
	EverRealClientID, EverRealClientSecret     string // defaults "everreal-sandbox-client" / "everreal-sandbox-secret"
	EstateGuruClientID, EstateGuruClientSecret string // defaults "estateguru-sandbox-client" / "estateguru-sandbox-secret"

	// Latency is added to every answer. A client that goes away stops the
	// wait.
	Latency time.Duration
	// AccessTTL is the access token lifetime of both providers. Zero: 1h at
	// EverReal (expires_in 3600), 43199s at EstateGuru.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of EverReal's refresh JWTs. Zero: 30 days.
	// EstateGuru's refresh tokens do not expire (they rotate instead).
	RefreshTTL time.Duration
	// RateLimit, if positive, makes EverReal answer 429 to requests over
	// this many per minute and host, as it does in production (300). Zero:
	// never 429, though the X-RateLimit-* headers still count down from 300.
	RateLimit int
	// EverRealHosts is how many EverReal hosts to serve (each tenant's
	// subdomain is a host of its own, with its own rate limit), each on its
	// own port: EverRealURLs. Zero means one.
	EverRealHosts int
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Logf, if set, gets one line per request: provider, method, path (never
	// the query, which may hold a token), status. Token values are never
	// logged.
	Logf func(format string, args ...any)
}

// Sandbox is a running pair of fakes. Its methods are safe for concurrent
// use.
type Sandbox struct {
	EverRealURL string // http://127.0.0.1:port, no trailing slash
	// EverRealURLs are the EverReal hosts (Options.EverRealHosts), the
	// first being EverRealURL. They share accounts and tokens; each has its
	// own rate limit window, as each tenant subdomain does.
	EverRealURLs  []string
	EstateGuruURL string // http://127.0.0.1:port, no trailing slash

	opts        Options
	now         func() time.Time
	erAccessTTL time.Duration
	egAccessTTL time.Duration
	refreshTTL  time.Duration

	erSrv, egSrv *http.Server
	done         chan struct{}
	closeOnce    sync.Once

	mu             sync.Mutex
	seq            uint64 // bumped for every token issued; tokens remember theirs
	accessEpoch    uint64 // access tokens with seq <= accessEpoch are expired
	revokedBefore  map[string]uint64
	hits           map[Endpoint]int
	faults         map[Endpoint][]*queuedFault
	refreshUses    map[string]int
	refreshReuse   int
	refusedRefresh int
	revoked        int
	evicted        int
	rateLimited    int
	rlWindows      map[string]*rlWindow // by Host

	// EverReal
	erUsers       map[string]*erUser // by email
	erOrder       []string
	erRefresh     map[string]*erRefresh
	erRefreshList map[string][]string // email -> live refresh tokens, oldest first
	erAccess      map[string]*erAccess
	erCodes       map[string]*erCode

	// EstateGuru
	egInvestors map[string]*egInvestor // by name
	egOrder     []string
	egRefresh   map[string]*egRefresh
	egAccess    map[string]*egAccess
}

// Start listens on 127.0.0.1:0 twice, once per provider, and serves until
// Close.
func Start(opts Options) (*Sandbox, error) {
	if opts.EverRealClientID == "" {
		opts.EverRealClientID = DefaultEverRealClientID
	}
	if opts.EverRealClientSecret == "" {
		opts.EverRealClientSecret = DefaultEverRealClientSecret
	}
	if opts.EstateGuruClientID == "" {
		opts.EstateGuruClientID = DefaultEstateGuruClientID
	}
	if opts.EstateGuruClientSecret == "" {
		opts.EstateGuruClientSecret = DefaultEstateGuruClientSecret
	}
	s := &Sandbox{
		opts:          opts,
		now:           opts.Now,
		erAccessTTL:   DefaultEverRealAccessTTL,
		egAccessTTL:   DefaultEstateGuruAccessTTL,
		refreshTTL:    DefaultRefreshTTL,
		done:          make(chan struct{}),
		revokedBefore: make(map[string]uint64),
		hits:          make(map[Endpoint]int),
		faults:        make(map[Endpoint][]*queuedFault),
		refreshUses:   make(map[string]int),
		rlWindows:     make(map[string]*rlWindow),
		erUsers:       make(map[string]*erUser),
		erRefresh:     make(map[string]*erRefresh),
		erRefreshList: make(map[string][]string),
		erAccess:      make(map[string]*erAccess),
		erCodes:       make(map[string]*erCode),
		egInvestors:   make(map[string]*egInvestor),
		egRefresh:     make(map[string]*egRefresh),
		egAccess:      make(map[string]*egAccess),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.AccessTTL > 0 {
		s.erAccessTTL, s.egAccessTTL = opts.AccessTTL, opts.AccessTTL
	}
	if opts.RefreshTTL > 0 {
		s.refreshTTL = opts.RefreshTTL
	}

	var erLns []net.Listener
	closeAll := func() {
		for _, ln := range erLns {
			ln.Close()
		}
	}
	for range max(1, opts.EverRealHosts) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("sandbox: everreal listener: %w", err)
		}
		erLns = append(erLns, ln)
		s.EverRealURLs = append(s.EverRealURLs, "http://"+ln.Addr().String())
	}
	egLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: estateguru listener: %w", err)
	}
	s.EverRealURL = s.EverRealURLs[0]
	s.EstateGuruURL = "http://" + egLn.Addr().String()
	s.erSrv = s.newServer(s.everRealMux())
	s.egSrv = s.newServer(s.estateGuruMux())
	for _, ln := range erLns {
		go s.erSrv.Serve(ln)
	}
	go s.egSrv.Serve(egLn)
	return s, nil
}

func (s *Sandbox) newServer(h http.Handler) *http.Server {
	errLog := log.New(io.Discard, "", 0)
	if s.opts.Logf != nil {
		errLog = log.New(logfWriter(s.opts.Logf), "sandbox: ", 0)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}
}

type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Close stops both fakes. Requests still waiting (Latency, Delay, Hang) are
// cut off without an answer.
func (s *Sandbox) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.erSrv.Close()
		s.egSrv.Close()
	})
}

// Stats is what the fakes observed.
type Stats struct {
	EverRealTokenRequests, EstateGuruTokenRequests int // all token endpoint hits, faulted ones included
	// RefreshReuse counts refresh grants presenting an already-rotated
	// (used) EstateGuru refresh token. It must stay 0 in syncer's tests.
	RefreshReuse int
	// RefusedRefresh counts refresh grants (both providers) answered
	// invalid_grant.
	RefusedRefresh int
	// DataRequests counts hits on the data endpoints, by Endpoint name:
	// "everreal users/me", "everreal userinfo", "estateguru userInvestments".
	DataRequests map[string]int
	// Revoked counts tokenrevoke calls that revoked something.
	Revoked int

	// Requests counts hits on every endpoint, by Endpoint name.
	Requests map[string]int
	// Evicted counts EverReal refresh tokens deleted because a 51st was
	// issued for the same client and user.
	Evicted int
	// RateLimited counts EverReal answers 429 under Options.RateLimit.
	RateLimited int
}

// Stats returns a copy of the counters.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		EverRealTokenRequests:   s.hits[EverRealToken],
		EstateGuruTokenRequests: s.hits[EstateGuruToken],
		RefreshReuse:            s.refreshReuse,
		RefusedRefresh:          s.refusedRefresh,
		Revoked:                 s.revoked,
		Evicted:                 s.evicted,
		RateLimited:             s.rateLimited,
		DataRequests: map[string]int{
			string(EverRealMe):            s.hits[EverRealMe],
			string(EstateGuruInvestments): s.hits[EstateGuruInvestments],
		},
		Requests: make(map[string]int, len(s.hits)),
	}
	if n := s.hits[EverRealUserInfo]; n > 0 {
		st.DataRequests[string(EverRealUserInfo)] = n
	}
	for e, n := range s.hits {
		st.Requests[string(e)] = n
	}
	return st
}

// ResetRateLimits starts every EverReal host's rate limit window afresh,
// as the next calendar minute would.
func (s *Sandbox) ResetRateLimits() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.rlWindows)
}

// RefreshUses says how many times a refresh token (of either provider) was
// presented to a refresh grant that the fake processed. Requests answered by
// an injected canned answer, hang or oversize fault never reached the grant
// and do not count; DropAfterProcessing ones do.
func (s *Sandbox) RefreshUses(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshUses[token]
}

// RevokeAll makes every token issued so far for the account (an EverReal
// email or an EstateGuru investor name) invalid: refresh grants answer
// invalid_grant, data calls invalid_token. provider is "everreal" or
// "estateguru". Tokens issued later work.
func (s *Sandbox) RevokeAll(provider string, account string) {
	p := strings.ToLower(strings.TrimSpace(provider))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokedBefore[p+"\x00"+account] = s.seq
	if p == EverReal {
		delete(s.erRefreshList, account)
	}
}

// ExpireAccessTokens makes every access token issued so far, at both
// providers, answer 401 invalid_token, as if its lifetime were over.
// Refresh tokens are untouched.
func (s *Sandbox) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessEpoch = s.seq
}

// nextSeq returns a new token sequence number. Callers hold s.mu.
func (s *Sandbox) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// live reports whether a token with sequence seq of the account survived
// RevokeAll. Callers hold s.mu.
func (s *Sandbox) live(provider, account string, seq uint64) bool {
	return seq > s.revokedBefore[provider+"\x00"+account]
}

// Endpoint names an endpoint for faults and counters.
type Endpoint string

const (
	EverRealToken         Endpoint = "everreal token"
	EverRealMe            Endpoint = "everreal users/me"
	EverRealRevoke        Endpoint = "everreal revoke"
	EverRealAuthorize     Endpoint = "everreal authorize"
	EverRealTokenInfo     Endpoint = "everreal tokeninfo"
	EverRealUserInfo      Endpoint = "everreal userinfo"
	EstateGuruAuthorize   Endpoint = "estateguru authorize"
	EstateGuruToken       Endpoint = "estateguru token"
	EstateGuruInvestments Endpoint = "estateguru userInvestments"
)

// Fault is an answer queued for an endpoint. Queued faults are consumed in
// order, one request each (Times requests for a fault with Times > 1); then
// normal behaviour resumes.
//
// A fault with Status or Body answers with them (Status 0 means 200;
// ContentType defaults to JSON for a body starting with { or [, HTML for <,
// plain text otherwise). A fault with none of Status, Body, Hang, Oversize
// and DropAfterProcessing only delays a normal answer. When several are set,
// Delay comes first, then the first of Hang, Oversize, DropAfterProcessing,
// Status/Body applies.
//
// DropAfterProcessing hijacks the connection and closes it. Go's
// http.Transport may resend a GET (never a POST) that fails this way on a
// reused connection, so aim it at POST endpoints (the token endpoints) to
// test a lost answer.
type Fault struct {
	Status      int
	Body        string
	ContentType string
	Header      map[string]string // set on the answer, after the usual headers (so it can override X-RateLimit-*)

	Delay               time.Duration // wait before answering (the client going away ends the wait)
	Hang                bool          // never answer until the client gives up
	Oversize            int64         // stream this many bytes of JSON-ish filler with status 200
	DropAfterProcessing bool          // process for real, then close the connection without answering
	// SlowAnswer: process the request for real at once (rotate the token,
	// say), then wait this long before sending the answer, whether or not
	// the client is still there: a provider that is slow to reply.
	SlowAnswer time.Duration
	Times      int // how many requests this applies to; 0 means 1
}

type queuedFault struct {
	f    Fault
	left int
}

// Inject queues a fault for an endpoint.
func (s *Sandbox) Inject(e Endpoint, f Fault) {
	n := f.Times
	if n <= 0 {
		n = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[e] = append(s.faults[e], &queuedFault{f: f, left: n})
}

// takeFault pops the next fault for e. Callers hold s.mu.
func (s *Sandbox) takeFault(e Endpoint) (Fault, bool) {
	q := s.faults[e]
	if len(q) == 0 {
		return Fault{}, false
	}
	qf := q[0]
	qf.left--
	if qf.left <= 0 {
		q[0] = nil
		q = q[1:]
		if len(q) == 0 {
			delete(s.faults, e)
		} else {
			s.faults[e] = q
		}
	}
	return qf.f, true
}

// route is one endpoint: its provider, methods and handler.
type route struct {
	e        Endpoint
	everreal bool
	methods  []string
	h        http.HandlerFunc
}

func (s *Sandbox) handle(mux *http.ServeMux, path string, rt route) {
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		s.serve(rt, w, r)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Description: "no such endpoint in the sandbox"})
}

// serve runs everything every endpoint shares: method check, counters,
// latency, EverReal's rate limit headers, faults, the request log.
func (s *Sandbox) serve(rt route, w http.ResponseWriter, r *http.Request) {
	rec := &statusWriter{ResponseWriter: w}
	if s.opts.Logf != nil {
		start := time.Now()
		defer func() {
			st := rec.status
			note := ""
			switch {
			case rec.dropped:
				note = " (connection dropped after processing)"
			case st == 0:
				note = " (no answer: client gone or sandbox closed)"
			}
			s.opts.Logf("sandbox: %s %s %s -> %d%s in %s", rt.e, r.Method, r.URL.Path, st, note, time.Since(start).Round(time.Microsecond))
		}()
	}
	w = rec

	allowed := false
	for _, m := range rt.methods {
		if r.Method == m {
			allowed = true
		}
	}
	if !allowed {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method_not_allowed", Description: r.Method + " is not allowed here"})
		return
	}

	s.mu.Lock()
	s.hits[rt.e]++
	s.mu.Unlock()

	if !s.wait(r.Context(), s.opts.Latency) {
		panic(http.ErrAbortHandler)
	}

	if rt.everreal && !s.rateLimit(w, r.Host) {
		writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "too_many_requests", Description: "Too Many Requests"})
		return
	}

	s.mu.Lock()
	f, faulted := s.takeFault(rt.e)
	s.mu.Unlock()
	if !faulted {
		rt.h(w, r)
		return
	}

	if !s.wait(r.Context(), f.Delay) {
		panic(http.ErrAbortHandler)
	}
	switch {
	case f.Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		panic(http.ErrAbortHandler)
	case f.Oversize > 0:
		applyHeaders(w, f.Header)
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(http.StatusOK)
		writeFiller(w, f.Oversize)
	case f.SlowAnswer > 0:
		rec := httptest.NewRecorder()
		rt.h(rec, r)
		select {
		case <-time.After(f.SlowAnswer):
		case <-s.done:
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	case f.DropAfterProcessing:
		rt.h(&discardWriter{header: make(http.Header)}, r)
		rec.dropped = true
		conn, _, err := http.NewResponseController(rec).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	case f.Status != 0 || f.Body != "":
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		ct := f.ContentType
		if ct == "" {
			ct = sniffContentType(f.Body)
		}
		w.Header().Set("Content-Type", ct)
		applyHeaders(w, f.Header)
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.WriteHeader(status)
		io.WriteString(w, f.Body)
	default:
		applyHeaders(w, f.Header)
		rt.h(w, r)
	}
}

func applyHeaders(w http.ResponseWriter, h map[string]string) {
	for k, v := range h {
		w.Header().Set(k, v)
	}
}

func sniffContentType(body string) string {
	t := strings.TrimSpace(body)
	switch {
	case strings.HasPrefix(t, "{"), strings.HasPrefix(t, "["):
		return "application/json"
	case strings.HasPrefix(t, "<"):
		return "text/html; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// writeFiller streams n bytes of something that starts like a JSON answer
// and never ends.
func writeFiller(w io.Writer, n int64) {
	const head = `{"investments":[`
	chunk := []byte(strings.Repeat(`{"filler":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},`, 512))
	first := []byte(head)
	for n > 0 {
		b := chunk
		if first != nil {
			b, first = first, nil
		}
		if int64(len(b)) > n {
			b = b[:n]
		}
		m, err := w.Write(b)
		n -= int64(m)
		if err != nil {
			return
		}
	}
}

// wait sleeps for d unless the request's client goes away or the sandbox
// closes first; it reports whether the whole wait passed.
func (s *Sandbox) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// rlWindow is one host's rate limit window.
type rlWindow struct {
	start time.Time
	count int
}

// rateLimit sets EverReal's X-RateLimit-* headers and reports whether the
// request is within the limit. Each host (tenant subdomain) has its own
// windows; they are calendar minutes of s.now.
func (s *Sandbox) rateLimit(w http.ResponseWriter, host string) bool {
	limit := s.opts.RateLimit
	enforce := limit > 0
	if !enforce {
		limit = EverRealRateLimitPerMinute
	}
	now := s.now()
	window := now.Truncate(time.Minute)
	s.mu.Lock()
	rl := s.rlWindows[host]
	if rl == nil {
		rl = &rlWindow{}
		s.rlWindows[host] = rl
	}
	if !window.Equal(rl.start) {
		rl.start, rl.count = window, 0
	}
	rl.count++
	count := rl.count
	over := enforce && count > limit
	if over {
		s.rateLimited++
	}
	s.mu.Unlock()
	reset := int64(math.Ceil(window.Add(time.Minute).Sub(now).Seconds()))
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-count)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(max(1, reset), 10))
	return !over
}

// statusWriter remembers the status for the request log. Unwrap lets
// http.ResponseController reach Hijack and Flush.
type statusWriter struct {
	http.ResponseWriter
	status  int
	dropped bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter takes the answer of a request whose answer is to be lost.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// errorBody is the OAuth error shape both providers answer with.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sandbox: encoding an answer: %v", err))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// expiresIn is a lifetime in whole seconds, at least 1.
func expiresIn(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// bearer returns the token of an "Authorization: Bearer T" header.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

var errNotJSON = errors.New("the body must be a JSON object (Content-Type: application/json)")
