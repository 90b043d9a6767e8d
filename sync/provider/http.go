package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// Body size caps. A token answer is a few kilobytes; a portfolio with ten
// thousand investments is a few megabytes.
const (
	MaxTokenBody int64 = 1 << 20  // 1 MiB
	MaxDataBody  int64 = 64 << 20 // 64 MiB
)

// ErrTooLarge is wrapped by the error for an answer over its size cap.
var ErrTooLarge = errors.New("answer too large")

// ErrAnswerLost is wrapped by the error for a call whose request was sent
// whole but whose answer never arrived whole (the connection broke, or the
// deadline passed): the provider may have acted on it. A refresh that
// rotates its token is the case that matters: the new token may be gone.
var ErrAnswerLost = errors.New("the answer was lost after the request was sent")

// HTTP is the call policy both providers share: one *http.Client (with its
// keep-alive pool), a deadline per call, capped bodies, retries with capped
// exponential backoff and jitter for transient failures, and an optional
// request rate limit. The zero value works: no retries, no limit.
type HTTP struct {
	Client *http.Client

	// Timeout bounds one whole attempt, headers and body. Zero: none beyond
	// the context's.
	Timeout time.Duration

	// Retries is how many more attempts a transient failure (a transport
	// error, a 5xx, a 429) gets. An answer lost after the request was sent
	// is retried once at once, even when Retries is 0 (see Do).
	Retries int
	// Backoff is the first wait between attempts; each next wait doubles, up
	// to MaxBackoff, with full jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxRetryAfter caps how long a provider's Retry-After is obeyed. An
	// answer asking for longer is not retried in this run.
	MaxRetryAfter time.Duration

	// Limiter, if set, spaces requests to stay under the provider's rate limit.
	// With a Pacer it is the hard ceiling (SYNCER_RATE_LIMIT).
	Limiter *rate.Limiter
	// Pacer, if set, paces requests by what the host's answers say (see
	// pacer.go): EverReal's X-RateLimit-* headers, EstateGuru's clean and
	// refused answers.
	Pacer Pacer

	// Sleep waits between attempts; tests may replace it.
	Sleep func(ctx context.Context, d time.Duration) error

	// OnRetry, if set, hears of every attempt that failed and will be
	// retried, with the wait before the next one (0: at once), so an
	// operator sees a flapping provider before it becomes a failed run. ctx
	// is the call's (ConnectionOf tells which connection it is for).
	OnRetry func(ctx context.Context, r Request, attempt int, wait time.Duration, err *Error)

	// OnAnswer, if set, hears of every attempt's outcome: the HTTP status,
	// or 0 when no answer arrived (for metrics).
	OnAnswer func(r Request, status int)
}

// Request describes one call. New builds a fresh *http.Request for each
// attempt (bodies cannot be replayed).
type Request struct {
	Provider string
	Op       string
	New      func(ctx context.Context) (*http.Request, error)
	MaxBody  int64
	// NoRetry: send at most once whatever happens (a password login, which
	// may evict a stored refresh token at EverReal every time it succeeds).
	NoRetry bool
	// Adjust, if set, corrects an error answer's classification by the
	// provider's own error table before Do decides whether to retry it
	// (EstateGuru answers a rate-limit breach with 403: transient).
	Adjust func(*Error)
}

// Response is a 2xx answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends the request under the policy. A non-2xx answer comes back as an
// *Error classified by its body; a failure to get an answer as an *Error of
// KindTransient.
//
// An answer lost after the request was sent whole gets one retry at once,
// on top of Retries and without a wait: a refresh may have been processed
// (and its token rotated) at the provider, and asking again at once either
// succeeds (nothing was processed, or the provider does not rotate) or says
// plainly that the token is gone. In that second case the error says the
// earlier answer was lost, so a person knows why a re-connect is needed.
// A NoRetry request is still sent only once.
func (h *HTTP) Do(ctx context.Context, r Request) (*Response, error) {
	attempts := 1
	if !r.NoRetry {
		attempts += h.Retries
	}
	var (
		lastErr *Error
		lost    error // why the first lost answer was lost
		atOnce  bool  // the next attempt is the lost answer's retry
		waits   int   // backoff waits so far
	)
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 && !atOnce {
			waits++
			wait := h.backoff(waits)
			if lastErr != nil && lastErr.RetryAfter > wait {
				wait = lastErr.RetryAfter
			}
			if h.OnRetry != nil {
				h.OnRetry(ctx, r, attempt, wait, lastErr)
			}
			if err := h.waitToRetry(ctx, wait); err != nil {
				return nil, lastErr
			}
		}
		atOnce = false
		resp, perr, lostWhy := h.once(ctx, r)
		if h.OnAnswer != nil {
			if perr == nil {
				h.OnAnswer(r, resp.Status)
			} else {
				h.OnAnswer(r, perr.Status)
			}
		}
		if perr == nil {
			return resp, nil
		}
		if lost != nil && (perr.Kind == KindReauth || perr.Kind == KindInvalidToken) {
			perr.Err = afterLostAnswer(perr.Err, lost)
		}
		lastErr = perr
		if !h.retryable(ctx, perr) {
			break
		}
		if lostWhy != nil && lost == nil && !r.NoRetry {
			lost = lostWhy
			atOnce = true
			attempts++ // on top of Retries
			if h.OnRetry != nil {
				h.OnRetry(ctx, r, attempt+1, 0, perr)
			}
		}
	}
	return nil, lastErr
}

// afterLostAnswer explains a refusal that follows a lost answer: the lost
// attempt may have used up what the provider now refuses.
func afterLostAnswer(err, lost error) error {
	why := fmt.Errorf("the answer to the previous attempt was lost (%v), so the provider may have processed "+
		"that request already: a refresh would have rotated the token, and the new one never arrived", lost)
	if err == nil {
		return why
	}
	return fmt.Errorf("%w; %w", err, why)
}

func (h *HTTP) retryable(ctx context.Context, e *Error) bool {
	if ctx.Err() != nil || e.Kind != KindTransient {
		return false
	}
	if e.RetryAfter > 0 && h.MaxRetryAfter > 0 && e.RetryAfter > h.MaxRetryAfter {
		return false
	}
	return true
}

// once makes one attempt. lost, when not nil, says why no whole answer came
// back to a request that went out whole: the provider may have acted on it.
func (h *HTTP) once(ctx context.Context, r Request) (_ *Response, _ *Error, lost error) {
	var answered struct {
		status int
		header http.Header
	}
	// The waits end when the run stops, grace or not (WithGrace): what is
	// not sent yet is not sent.
	stop := stopOf(ctx)
	// Pacing (pacer.go): wait for the host's budget, and tell the pacer
	// how the attempt went. The pacer before the ceiling: callers the
	// pacer held back leave together when the host's window turns, and
	// the ceiling then spaces them.
	if h.Pacer != nil {
		paced, err := h.Pacer.Wait(stop)
		if err != nil {
			return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: fmt.Errorf("waiting for the rate limit: %w", err)}, nil
		}
		defer func() { paced(answered.status, answered.header) }()
	}
	if h.Limiter != nil {
		if err := h.Limiter.Wait(stop); err != nil {
			return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: fmt.Errorf("waiting for the rate limit: %w", err)}, nil
		}
	}
	if err := stop.Err(); err != nil {
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: fmt.Errorf("not sent: %w", err)}, nil
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	// Whether the request left whole decides whether a failure may have
	// been processed; the transport reports it from its own goroutine.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	req, err := r.New(ctx)
	if err != nil {
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindRequest, Err: err}, nil
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		sent := wrote.Load()
		cause := transportError(ctx, err, sent)
		e := &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: cause}
		if !sent {
			return nil, e, nil // never sent whole: nothing can have been processed
		}
		if !errors.Is(cause, ErrNoAnswer) {
			// A deadline explains itself; a broken connection does not.
			e.Err = fmt.Errorf("%w (%w)", ErrAnswerLost, cause)
		}
		return nil, e, cause
	}
	defer resp.Body.Close()
	answered.status, answered.header = resp.StatusCode, resp.Header
	limit := r.MaxBody
	if limit <= 0 {
		limit = MaxTokenBody
	}
	tooLarge := func() *Error {
		// Drain nothing more: closing drops the connection, which is right
		// for a peer sending gigabytes.
		return &Error{Provider: r.Provider, Op: r.Op, Kind: KindBadAnswer, Status: resp.StatusCode,
			Err: fmt.Errorf("%w: more than %s (the cap for this call)", ErrTooLarge, byteSize(limit))}
	}
	if resp.ContentLength > limit {
		// Said up front: not a byte of it is read.
		return nil, tooLarge(), nil
	}
	body, err := readCapped(resp.Body, limit, resp.ContentLength)
	if errors.Is(err, ErrTooLarge) {
		return nil, tooLarge(), nil
	}
	if err != nil {
		cause := transportError(ctx, err, true)
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Status: resp.StatusCode,
			Err: fmt.Errorf("reading the answer: %w", cause)}, cause
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := Classify(r.Provider, r.Op, resp.StatusCode, resp.Header, body)
		if r.Adjust != nil {
			r.Adjust(e)
		}
		return nil, e, nil
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil, nil
}

// ErrNoAnswer is a request sent whole and not answered in time: the call's
// deadline or the transport's wait for the answer's headers, both
// the HTTP timeout the command configured.
var ErrNoAnswer = errors.New("no answer before the deadline")

// transportError says plainly what a deadline means; the *url.Error text
// would otherwise repeat the whole URL, query string included. sent says
// whether the request had gone out whole.
func transportError(ctx context.Context, err error, sent bool) error {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	switch {
	case ctx.Err() == context.DeadlineExceeded, timeout && sent:
		return ErrNoAnswer
	case ctx.Err() == context.Canceled:
		return context.Canceled
	case timeout:
		return errors.New("timed out connecting to the provider")
	}
	// Drop the URL (it may carry a token in its query) and keep the cause.
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && strings.Contains(err.Error(), "://") {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// readCapped reads a body of at most limit bytes, stopping one byte past
// it. A stated length (size, -1 when unknown) within the cap sizes one
// buffer (a false one costs at most the cap). An unstated one is read in
// chunks joined once at the end: memory follows what arrives, and an
// endless answer leaves no trail of outgrown buffers behind.
func readCapped(r io.Reader, limit, size int64) ([]byte, error) {
	lr := io.LimitReader(r, limit+1)
	if size >= 0 && size <= limit {
		b := make([]byte, size+1) // +1: a body longer than stated shows
		n, err := fill(lr, b)
		if err != nil {
			return nil, err
		}
		if int64(n) > size {
			return readRest(lr, b[:n], limit)
		}
		return b[:n], nil
	}
	return readRest(lr, nil, limit)
}

// readRest reads r to its end in chunks after the bytes already read.
func readRest(r io.Reader, head []byte, limit int64) ([]byte, error) {
	chunks := [][]byte{head}
	total, next := len(head), 4<<10
	for {
		c := make([]byte, next)
		n, err := fill(r, c)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, c[:n])
		total += n
		if n < len(c) {
			break // the end
		}
		next = min(2*next, 1<<20)
	}
	if int64(total) > limit {
		return nil, ErrTooLarge
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

// fill reads into b until it is full or r ends; the end is not an error.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (h *HTTP) backoff(attempt int) time.Duration {
	base, max := h.Backoff, h.MaxBackoff
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if max <= 0 {
		max = 30 * time.Second
	}
	d := base << (attempt - 1)
	if d > max || d <= 0 {
		d = max
	}
	// Full jitter in [d/2, d]: spread retries from many connections.
	return d/2 + rand.N(d/2+1)
}

type stopKey struct{}

// WithGrace returns a context for a request that must be seen through a
// stop: it ends grace after parent ends (or when cancel is called), not at
// once. Only a request already sent gets that grace: HTTP.Do sends nothing
// new once parent has ended, and ends its waits (for the rate limit, the
// pacer, a retry's backoff) then.
func WithGrace(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { time.AfterFunc(grace, cancel) })
	return context.WithValue(ctx, stopKey{}, parent), func() { stop(); cancel() }
}

// stopOf is the context whose end stops new requests: the parent of a
// WithGrace context, or ctx itself.
func stopOf(ctx context.Context) context.Context {
	if parent, ok := ctx.Value(stopKey{}).(context.Context); ok {
		return parent
	}
	return ctx
}

// waitToRetry waits d before a retry, until the run stops. A long wait gives
// the caller's network slot to other work meanwhile (WaitHook), as a
// pacer's does, and takes it back before the retry leaves.
func (h *HTTP) waitToRetry(ctx context.Context, d time.Duration) error {
	var resume func() error
	if hook := waitHookOf(ctx); hook != nil && d > longWait {
		resume = hook()
	}
	err := h.sleep(stopOf(ctx), d)
	if resume != nil {
		if rerr := resume(); err == nil {
			err = rerr
		}
	}
	return err
}

func (h *HTTP) sleep(ctx context.Context, d time.Duration) error {
	if h.Sleep != nil {
		return h.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// DecodeJSON decodes a 2xx body into v, or returns a KindBadAnswer error that
// says what the body was instead.
func DecodeJSON(providerName, op string, resp *Response, v any) error {
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return BadAnswer(providerName, op, resp.Status, resp.Header, resp.Body, jsonCause(err))
	}
	return nil
}

// jsonCause keeps the JSON error's position and type but never a quoted value.
func jsonCause(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("broken JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("field %q is a JSON %s, expected %s", te.Field, te.Value, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	}
	return errors.New("undecodable JSON")
}

// ExpiresIn is an expires_in that arrives as a number (3600) or a string
// ("3600"), as EverReal's refresh answer does.
type ExpiresIn int64

func (e *ExpiresIn) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*e = 0
		return nil
	}
	s = strings.Trim(s, `"`)
	s = strings.TrimSpace(s)
	if s == "" {
		*e = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64) // "3600.0": whole seconds only matter
		if ferr != nil || f < 0 || f > 1e12 {
			return fmt.Errorf("expires_in %q is not a number of seconds", truncate(s, 20))
		}
		n = int64(f)
	}
	if n < 0 {
		return fmt.Errorf("expires_in %d is negative", n)
	}
	*e = ExpiresIn(n)
	return nil
}

// At returns when a token issued at now dies, or the zero time when the
// provider did not say.
func (e ExpiresIn) At(now time.Time) time.Time {
	if e <= 0 {
		return time.Time{}
	}
	// Past about 292 years the product overflows time.Duration and would
	// land in the past: a lifetime that long is "never" anyway.
	const maxSeconds = ExpiresIn(math.MaxInt64 / int64(time.Second))
	return now.Add(time.Duration(min(e, maxSeconds)) * time.Second).UTC().Truncate(time.Second)
}

// truncate keeps at most n bytes of s, never cutting a character in two.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
