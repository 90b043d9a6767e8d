package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

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
	// error, a 5xx, a 429) gets.
	Retries int
	// Backoff is the first wait between attempts; each next wait doubles, up
	// to MaxBackoff, with full jitter.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// MaxRetryAfter caps how long a provider's Retry-After is obeyed. An
	// answer asking for longer is not retried in this run.
	MaxRetryAfter time.Duration

	// Limiter, if set, spaces requests to stay under the provider's rate limit.
	Limiter *rate.Limiter

	// Sleep waits between attempts; tests may replace it.
	Sleep func(ctx context.Context, d time.Duration) error
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
func (h *HTTP) Do(ctx context.Context, r Request) (*Response, error) {
	attempts := 1
	if !r.NoRetry {
		attempts += h.Retries
	}
	var lastErr *Error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			wait := h.backoff(attempt)
			if lastErr != nil && lastErr.RetryAfter > wait {
				wait = lastErr.RetryAfter
			}
			if err := h.sleep(ctx, wait); err != nil {
				return nil, lastErr
			}
		}
		resp, perr := h.once(ctx, r)
		if perr == nil {
			return resp, nil
		}
		lastErr = perr
		if !h.retryable(ctx, perr) {
			break
		}
	}
	return nil, lastErr
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

func (h *HTTP) once(ctx context.Context, r Request) (*Response, *Error) {
	if h.Limiter != nil {
		if err := h.Limiter.Wait(ctx); err != nil {
			return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: fmt.Errorf("waiting for the rate limit: %w", err)}
		}
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	req, err := r.New(ctx)
	if err != nil {
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindRequest, Err: err}
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Err: transportError(ctx, err)}
	}
	defer resp.Body.Close()
	limit := r.MaxBody
	if limit <= 0 {
		limit = MaxTokenBody
	}
	body, err := readCapped(resp.Body, limit)
	if errors.Is(err, ErrTooLarge) {
		// Drain nothing more: closing drops the connection, which is right
		// for a peer sending gigabytes.
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindBadAnswer, Status: resp.StatusCode,
			Err: fmt.Errorf("%w: more than %s (the cap for this call)", ErrTooLarge, byteSize(limit))}
	}
	if err != nil {
		return nil, &Error{Provider: r.Provider, Op: r.Op, Kind: KindTransient, Status: resp.StatusCode,
			Err: fmt.Errorf("reading the answer: %w", transportError(ctx, err))}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, Classify(r.Provider, r.Op, resp.StatusCode, resp.Header, body)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// transportError says plainly what a deadline means; the *url.Error text
// would otherwise repeat the whole URL, query string included.
func transportError(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return errors.New("no answer before the deadline (SYNCER_HTTP_TIMEOUT)")
	}
	if ctx.Err() == context.Canceled {
		return context.Canceled
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timed out waiting for the provider")
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

func readCapped(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, ErrTooLarge
	}
	return body, nil
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
	return now.Add(time.Duration(e) * time.Second).UTC().Truncate(time.Second)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
