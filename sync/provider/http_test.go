package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// sleeps records the waits the policy asks for instead of waiting: the
// tests check what syncer decides to wait, never how long anything took.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// answers serves a script of handlers, one per request, the last one for
// every request after it, and counts requests.
type answers struct {
	hits  atomic.Int32
	steps []http.HandlerFunc
}

func (a *answers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(a.hits.Add(1)) - 1
	io.Copy(io.Discard, r.Body)
	a.steps[min(n, len(a.steps)-1)](w, r)
}

func serve(t *testing.T, steps ...http.HandlerFunc) (*answers, string) {
	t.Helper()
	a := &answers{steps: steps}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}

func status(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// drop reads the request whole, then closes the connection without an
// answer: the provider processed it, the answer is lost.
func drop(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func post(url string) Request {
	return Request{
		Provider: "prov",
		Op:       "refresh",
		New: func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("grant_type=refresh_token"))
		},
	}
}

func policy(retries int, s *sleeps) *HTTP {
	return &HTTP{Client: &http.Client{}, Timeout: 5 * time.Second, Retries: retries,
		Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxRetryAfter: 2 * time.Minute, Sleep: s.sleep}
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want a *provider.Error", err, err)
	}
	return pe
}

func TestServerErrorsAreRetriedWithBackoff(t *testing.T) {
	a, url := serve(t, status(500, ""), status(502, "<html>Bad Gateway</html>"), status(200, `{"ok":true}`))
	var s sleeps
	resp, err := policy(3, &s).Do(context.Background(), post(url))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(resp.Body), `{"ok":true}`; got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
	if got, want := a.hits.Load(), int32(3); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	waits := s.all()
	if got, want := len(waits), 2; got != want {
		t.Fatalf("waits = %v, want %d of them", waits, want)
	}
	// Full jitter in [d/2, d], doubling from Backoff.
	for i, w := range waits {
		d := 100 * time.Millisecond << i
		if w < d/2 || w > d {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, w, d/2, d)
		}
	}
}

func TestRetriesRunOut(t *testing.T) {
	a, url := serve(t, status(503, `<!DOCTYPE html><html><body>Service Unavailable</body></html>`, "Content-Type", "text/html"))
	var s sleeps
	_, err := policy(2, &s).Do(context.Background(), post(url))
	pe := asError(t, err)
	if got, want := pe.Kind, KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := a.hits.Load(), int32(3); got != want {
		t.Fatalf("requests = %d, want %d (1 + 2 retries)", got, want)
	}
	// A gateway's page is named for what it is.
	if msg := err.Error(); !strings.Contains(msg, "HTML") || !strings.Contains(msg, "HTTP 503") {
		t.Fatalf("error %q should say the answer was an HTML page with status 503", msg)
	}
}

func TestRetryAfterIsObeyed(t *testing.T) {
	a, url := serve(t, status(429, `{"error":"too_many_requests"}`, "Retry-After", "7"), status(200, `{}`))
	var s sleeps
	if _, err := policy(3, &s).Do(context.Background(), post(url)); err != nil {
		t.Fatal(err)
	}
	if got, want := a.hits.Load(), int32(2); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	if got, want := s.all(), []time.Duration{7 * time.Second}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("waits = %v, want %v", got, want)
	}
}

func TestRetryAfterPastTheCapIsNotWaitedFor(t *testing.T) {
	a, url := serve(t, status(429, `{"error":"too_many_requests"}`, "Retry-After", "3600"))
	var s sleeps
	_, err := policy(3, &s).Do(context.Background(), post(url))
	pe := asError(t, err)
	if got, want := pe.Kind, KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := a.hits.Load(), int32(1); got != want {
		t.Fatalf("requests = %d, want %d (an hour is past the cap: try in a later run)", got, want)
	}
	if got := s.all(); len(got) != 0 {
		t.Fatalf("waited %v, want no wait", got)
	}
	if msg := err.Error(); !strings.Contains(msg, "asked to wait 1h0m0s") {
		t.Fatalf("error %q should say how long the provider asked to wait", msg)
	}
}

func TestRateLimitResetCountsOnlyForTheRateLimit(t *testing.T) {
	// EverReal sends X-RateLimit-Reset on every answer; a 500 must not wait
	// out the rate-limit window, a 429 must.
	_, url := serve(t,
		status(500, "", "X-RateLimit-Reset", "59", "X-RateLimit-Remaining", "250"),
		status(429, "", "X-RateLimit-Reset", "5", "X-RateLimit-Remaining", "0"),
		status(200, `{}`, "X-RateLimit-Reset", "50"))
	var s sleeps
	if _, err := policy(3, &s).Do(context.Background(), post(url)); err != nil {
		t.Fatal(err)
	}
	waits := s.all()
	if len(waits) != 2 {
		t.Fatalf("waits = %v, want 2", waits)
	}
	if waits[0] > time.Second {
		t.Fatalf("after a 500 the wait was %v: X-RateLimit-Reset was obeyed for an error that is not the rate limit", waits[0])
	}
	if got, want := waits[1], 5*time.Second; got != want {
		t.Fatalf("after a 429 the wait was %v, want %v", got, want)
	}
}

func TestErrorsThatNeedAPersonAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   Kind
	}{
		{"invalid_grant", 400, `{"error":"invalid_grant","error_description":"Invalid refresh token"}`, KindReauth},
		{"EverReal's 403 invalid_grant", 403, `{"error":"invalid_grant","error_description":"heimdall.validation.user.does.not.exist"}`, KindReauth},
		{"invalid_client", 401, `{"error":"invalid_client"}`, KindClient},
		{"EstateGuru's Unauthorized", 401, `{"error":"Unauthorized","message":"Bad credentials"}`, KindClient},
		{"invalid_grant with a 5xx status", 503, `{"error":"invalid_grant"}`, KindReauth},
		{"invalid_token", 401, `{"error":"invalid_token"}`, KindInvalidToken},
		{"validation", 400, `{"error":"Errors","message":"requestId is missing"}`, KindRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, url := serve(t, status(tc.status, tc.body, "Content-Type", "application/json"))
			var s sleeps
			_, err := policy(3, &s).Do(context.Background(), post(url))
			pe := asError(t, err)
			if got, want := pe.Kind, tc.kind; got != want {
				t.Fatalf("kind = %v, want %v", got, want)
			}
			if got, want := a.hits.Load(), int32(1); got != want {
				t.Fatalf("requests = %d, want %d", got, want)
			}
		})
	}
}

func TestNoRetryIsSentOnce(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{"503": status(503, ""), "lost answer": drop} {
		t.Run(name, func(t *testing.T) {
			a, url := serve(t, h, status(200, `{}`))
			var s sleeps
			r := post(url)
			r.NoRetry = true
			if _, err := policy(3, &s).Do(context.Background(), r); err == nil {
				t.Fatal("want an error")
			}
			if got, want := a.hits.Load(), int32(1); got != want {
				t.Fatalf("requests = %d, want %d", got, want)
			}
		})
	}
}

func TestLostAnswerIsRetriedOnceAtOnce(t *testing.T) {
	// Even with no retries configured: the provider may have processed the
	// refresh, and asking again at once is how to find out.
	a, url := serve(t, drop, status(200, `{"access_token":"new"}`))
	var s sleeps
	resp, err := policy(0, &s).Do(context.Background(), post(url))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(resp.Body), `{"access_token":"new"}`; got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
	if got, want := a.hits.Load(), int32(2); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	if got := s.all(); len(got) != 0 {
		t.Fatalf("waited %v before the retry, want no wait", got)
	}
}

func TestLostAnswerThenInvalidGrantSaysWhy(t *testing.T) {
	a, url := serve(t, drop, status(400, `{"error":"invalid_grant","error_description":"Invalid refresh token"}`))
	var s sleeps
	_, err := policy(3, &s).Do(context.Background(), post(url))
	pe := asError(t, err)
	if got, want := pe.Kind, KindReauth; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := a.hits.Load(), int32(2); got != want {
		t.Fatalf("requests = %d, want %d (the lost one and one retry, then stop)", got, want)
	}
	msg := err.Error()
	// The remedy (`syncer connect`) is the command's to add: KindReauth
	// above; cmd/syncer's hints_test.go checks the words.
	for _, want := range []string{"invalid_grant", "previous attempt was lost", "rotated"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q should say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("error %q spans lines", msg)
	}
}

func TestLostAnswerRetryComesOnceOnly(t *testing.T) {
	a, url := serve(t, drop)
	var s sleeps
	_, err := policy(2, &s).Do(context.Background(), post(url))
	if !errors.Is(err, ErrAnswerLost) || KindOf(err) != KindTransient {
		t.Fatalf("err = %v, want a transient ErrAnswerLost", err)
	}
	// 1 + one at once + 2 retries with backoff.
	if got, want := a.hits.Load(), int32(4); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	if got, want := len(s.all()), 2; got != want {
		t.Fatalf("waits = %v, want %d", s.all(), want)
	}
}

func TestHangingProviderHitsTheDeadline(t *testing.T) {
	release := make(chan struct{})
	a, url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	var s sleeps
	h := policy(1, &s)
	h.Timeout = 100 * time.Millisecond
	_, err := h.Do(context.Background(), post(url))
	pe := asError(t, err)
	if got, want := pe.Kind, KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	// The command names its variable (SYNCER_HTTP_TIMEOUT) for this error:
	// cmd/syncer's hints_test.go.
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("error %q should be ErrNoAnswer", err)
	}
	// The request went out, so the provider may have acted on it: one retry
	// at once, then the one ordinary retry.
	if got, want := a.hits.Load(), int32(3); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestBodiesAreCapped(t *testing.T) {
	endless := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat("x", 32<<10))
		io.WriteString(w, `{"x":"`)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	declared := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10000000000")
		w.WriteHeader(200)
		io.WriteString(w, "{}")
	}
	exact := status(200, strings.Repeat("y", 4<<10))
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		ok   bool
	}{
		{"streamed past the cap", endless, false},
		{"declared past the cap", declared, false},
		{"exactly the cap", exact, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, url := serve(t, tc.h)
			var s sleeps
			r := post(url)
			r.MaxBody = 4 << 10
			resp, err := policy(3, &s).Do(context.Background(), r)
			if tc.ok {
				if err != nil || len(resp.Body) != 4<<10 {
					t.Fatalf("err = %v; want the 4 KiB body", err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			if got, want := KindOf(err), KindBadAnswer; got != want {
				t.Fatalf("kind = %v, want %v", got, want)
			}
			if msg := err.Error(); !strings.Contains(msg, "more than 4 KiB") {
				t.Fatalf("error %q should name the cap", msg)
			}
			if got, want := a.hits.Load(), int32(1); got != want {
				t.Fatalf("requests = %d, want %d (an oversized answer is not retried)", got, want)
			}
		})
	}
}

func TestTransportErrorsKeepTheURLOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	const token = "secret-token-in-query"
	r := Request{Provider: "prov", Op: "revoke", New: func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/revoke?token="+token, nil)
	}}
	var s sleeps
	_, err = policy(1, &s).Do(context.Background(), r)
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error %q quotes the URL with its token", err)
	}
	// Nothing was sent, so nothing can have been processed: the ordinary
	// retry, with a wait.
	if got, want := len(s.all()), 1; got != want {
		t.Fatalf("waits = %v, want %d", s.all(), want)
	}
}

func TestCancelledWhileWaitingReturnsTheLastError(t *testing.T) {
	_, url := serve(t, status(503, `{"error":"temporarily_unavailable"}`))
	ctx, cancel := context.WithCancel(context.Background())
	h := policy(3, nil)
	h.Sleep = func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}
	_, err := h.Do(ctx, post(url))
	pe := asError(t, err)
	if got, want := pe.Code, "temporarily_unavailable"; got != want {
		t.Fatalf("code = %q, want %q", got, want)
	}
}

func TestRateLimiterBoundsRequests(t *testing.T) {
	a, url := serve(t, status(200, `{}`))
	var s sleeps
	h := policy(0, &s)
	h.Limiter = rate.NewLimiter(rate.Every(time.Hour), 1)
	if _, err := h.Do(context.Background(), post(url)); err != nil {
		t.Fatal(err)
	}
	// The next token is an hour away: a call that cannot wait that long
	// fails without being sent.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := h.Do(ctx, post(url))
	if msg := err.Error(); !strings.Contains(msg, "rate limit") {
		t.Fatalf("error %q should mention the rate limit", msg)
	}
	if got, want := a.hits.Load(), int32(1); got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	h := &HTTP{Backoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second}
	for attempt := 1; attempt <= 70; attempt++ {
		d := min(500*time.Millisecond<<(attempt-1), 30*time.Second)
		if attempt > 7 {
			d = 30 * time.Second // and no overflow past 63 doublings
		}
		for range 20 {
			if got := h.backoff(attempt); got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, got, d/2, d)
			}
		}
	}
}

func TestHeaderTimeoutIsNamedLikeTheDeadline(t *testing.T) {
	// The transport's own wait for headers (SYNCER_HTTP_TIMEOUT too) may
	// fire before the call's deadline; a person sees the same message.
	release := make(chan struct{})
	a, url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	var s sleeps
	h := policy(0, &s)
	h.Client = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}}
	_, err := h.Do(context.Background(), post(url))
	if msg := err.Error(); !strings.Contains(msg, "no answer before the deadline") || !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("error %q should be ErrNoAnswer, named like the deadline", msg)
	}
	if got, want := a.hits.Load(), int32(2); got != want {
		t.Fatalf("requests = %d, want %d (sent, so asked once more at once)", got, want)
	}
}

// trickle hands out its bytes a few at a time, as a slow network does.
type trickle struct{ b []byte }

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 777)], t.b)
	t.b = t.b[n:]
	return n, nil
}

func TestReadCapped(t *testing.T) {
	body := make([]byte, 100_000)
	for i := range body {
		body[i] = byte(i % 251)
	}
	for _, n := range []int{0, 1, 4095, 4096, 4097, 12287, 12288, 99_999, 100_000} {
		for _, stated := range []bool{false, true} {
			for _, limit := range []int64{int64(n), int64(n) - 1, 100_000} {
				if limit < 0 {
					continue
				}
				size := int64(-1)
				if stated {
					size = int64(n)
				}
				got, err := readCapped(&trickle{body[:n]}, limit, size)
				if int64(n) > limit {
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("n=%d limit=%d stated=%v: err = %v, want ErrTooLarge", n, limit, stated, err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, body[:n]) {
					t.Fatalf("n=%d limit=%d stated=%v: got %d bytes, %v; want the %d bytes sent", n, limit, stated, len(got), err, n)
				}
			}
		}
	}
	// A stated length that is too short does not cut the body off.
	if got, err := readCapped(&trickle{body[:5000]}, 100_000, 10); err != nil || len(got) != 5000 {
		t.Fatalf("understated length: got %d bytes, %v; want 5000", len(got), err)
	}
}

func TestOnRetryHearsEveryRetry(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	var heard []int
	h := &HTTP{Client: srv.Client(), Retries: 3,
		Sleep: func(context.Context, time.Duration) error { return nil },
		OnRetry: func(_ context.Context, _ Request, attempt int, _ time.Duration, err *Error) {
			heard = append(heard, err.Status)
		}}
	_, err := h.Do(context.Background(), Request{Provider: "p", Op: "op", New: func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(heard), "[502 502]"; got != want {
		t.Fatalf("OnRetry heard %s, want %s", got, want)
	}
}

func TestScrubTextFoldsCaseAndBasicForms(t *testing.T) {
	forms := BasicForms("id", "s3cret-canary?>>")
	text := "auth " + strings.Join(forms, " ") + " tok ABCDEF-CANARY and aBcDeF-cAnArY"
	got := ScrubText(text, append(forms, "abcdef-canary")...)
	for _, f := range forms {
		if strings.Contains(got, f) {
			t.Fatalf("ScrubText left %q in %q", f, got)
		}
	}
	if strings.Contains(strings.ToLower(got), "canary") {
		t.Fatalf("ScrubText left a case variant: %q", got)
	}
	if got, want := ScrubText("cut ABCDEF-CAN…", "abcdef-canary"), "cut "+Redacted+"…"; got != want {
		t.Fatalf("truncated = %q, want %q", got, want)
	}
}

func TestScrubBytesCountsEveryCase(t *testing.T) {
	raw := []byte(`{"a":"tok-Canary-1","b":"TOK-CANARY-1","c":"tok-canary-1tok-canary-1","d":"tok-canar"}`)
	clean, n := ScrubBytes(raw, "tok-canary-1")
	if n != 4 || strings.Contains(strings.ToLower(string(clean)), "tok-canary-1") {
		t.Fatalf("ScrubBytes = %s, %d; want 4 replaced", clean, n)
	}
	if !strings.Contains(string(clean), "tok-canar\"") {
		t.Fatalf("a partial match was replaced: %s", clean)
	}
	same, n := ScrubBytes(raw, "absent-secret")
	if n != 0 || &same[0] != &raw[0] {
		t.Fatalf("no secret: want b itself back, got %d", n)
	}
}

// Once the run stops, a request not sent yet is not sent, even one that
// carries a grace (a refresh grant, WithGrace): the grace is for an answer
// already on its way, and a grant sent then could be cut off, its rotated
// token lost.
func TestNothingIsSentAfterTheStop(t *testing.T) {
	a, url := serve(t, status(200, `{}`))
	h := policy(0, nil)
	h.Limiter = rate.NewLimiter(rate.Every(time.Second), 1)
	if _, err := h.Do(context.Background(), post(url)); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(context.Background())
	ctx, cancel := WithGrace(run, time.Minute)
	defer cancel()
	time.AfterFunc(50*time.Millisecond, stop) // while the call waits for the ceiling
	if _, err := h.Do(ctx, post(url)); err == nil {
		t.Fatal("a call stopped before it was sent succeeded")
	}
	if got := a.hits.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1: one was sent after the run stopped", got)
	}
}

// heldPacer holds every request until open is closed.
type heldPacer struct{ open chan struct{} }

func (p heldPacer) Wait(ctx context.Context) (func(int, http.Header), error) {
	select {
	case <-p.open:
		return func(int, http.Header) {}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// SYNCER_RATE_LIMIT stays a ceiling after a pacer hold: callers the pacer
// held back (their host's window was spent) leave when it turns, and the
// ceiling spaces them then, instead of letting go at once the calls that
// waited for it during the hold.
func TestTheCeilingHoldsAfterAPacerHold(t *testing.T) {
	var mu sync.Mutex
	var arrived []time.Time
	_, url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived = append(arrived, time.Now())
		mu.Unlock()
		io.WriteString(w, `{}`)
	})
	const calls, every = 4, 100 * time.Millisecond
	h := policy(0, nil)
	h.Limiter = rate.NewLimiter(rate.Every(every), 1)
	open := make(chan struct{})
	h.Pacer = heldPacer{open}
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			if _, err := h.Do(context.Background(), post(url)); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(calls * every) // the hold: long enough for the ceiling to pass every call
	close(open)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(arrived) != calls {
		t.Fatalf("%d requests arrived, want %d", len(arrived), calls)
	}
	first, last := slices.MinFunc(arrived, time.Time.Compare), slices.MaxFunc(arrived, time.Time.Compare)
	if span, least := last.Sub(first), (calls-1)*every*3/4; span < least {
		t.Fatalf("%d requests within %s under a ceiling of one per %s: want them spread over %s at least", calls, span, every, least)
	}
}

// A long backoff before a retry gives the caller's network slot to other
// work meanwhile (WaitHook), and takes it back before the retry leaves; a
// short one keeps it.
func TestALongBackoffStepsAside(t *testing.T) {
	a, url := serve(t, status(503, `{"error":"temporarily_unavailable"}`),
		status(503, `{"error":"temporarily_unavailable"}`, "Retry-After", "1"), status(200, `{}`))
	var events []string
	ctx := WithWaitHook(context.Background(), func() func() error {
		events = append(events, fmt.Sprintf("aside after %d requests", a.hits.Load()))
		return func() error {
			events = append(events, "back")
			return nil
		}
	})
	var s sleeps
	h := policy(2, &s)
	h.Backoff = 10 * time.Millisecond // the first wait is short; the second, Retry-After's second, long
	if _, err := h.Do(ctx, post(url)); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(events, ", "), "aside after 2 requests, back"; got != want {
		t.Fatalf("events: %s; want %s (only the long wait steps aside)", got, want)
	}
}
