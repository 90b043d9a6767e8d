package provider

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	stdsync "sync"
	"time"
)

// Pacer spaces the requests to one provider host by what that host's
// answers say. HTTP.Do asks it before every attempt and tells it how the
// attempt went.
type Pacer interface {
	// Wait blocks until a request may go out, or ctx ends. done must be
	// called once with the answer's status and headers (status 0 when no
	// answer arrived).
	Wait(ctx context.Context) (done func(status int, header http.Header), err error)
}

// RateChange is a pacer's report that its rate changed: a cut after a
// rate-limit answer or a 5xx, or a ramp that doubled the rate since the last
// report. Reason is "rate_limited", "server_error" or "clean_answers".
type RateChange struct {
	From, To float64 // requests per second
	Reason   string
	Status   int // the answer's status, for a cut
}

// HeaderPacer paces a host that says its budget in every answer, as EverReal
// does: X-RateLimit-Limit (requests per window), X-RateLimit-Remaining and
// X-RateLimit-Reset (seconds until the window starts afresh). Requests go
// out at once while the budget lasts, counted down locally as they leave (so
// requests in flight are counted before their answers say so), and wait for
// the window's end once it is spent: a run goes at full speed and never
// draws a 429 in normal operation.
//
// Until an answer carries the headers, one request is in flight at a time;
// a host that answers without them is not paced at all. A 429 spends the
// budget until the Reset it names (or Retry-After), a second at least.
// Every wait a host names gets resetMargin on top and lasts maxHold at
// most; a limit of 0 counts as 1.
type HeaderPacer struct {
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu        stdsync.Mutex
	cond      chan struct{} // closed and replaced when the state changes
	known     bool          // an answer carried the headers
	free      bool          // an answer came without them: no pacing
	probing   bool          // the first request is out
	limit     int
	left      int       // requests that may still go out in this window
	resetAt   time.Time // when the window starts afresh
	confirmed bool      // an answer about this window said when it ends
	rolledAt  time.Time // when this window began here (the last one's end, as we knew it)
	inflight  int
	// guessedUntil, when set, is the end of the hold a 429 without
	// headers put on a host that never sent them: an answer without them
	// after it makes the host unpaced again.
	guessedUntil time.Time
}

// maxHold bounds how long a 429 holds a host's requests back: a provider
// asking for longer is asked again then (the call that drew it is not
// retried past HTTP.MaxRetryAfter anyway).
const maxHold = 2 * time.Minute

// resetMargin is added to every wait the host names: its Reset (and
// Retry-After) are whole seconds, and a host that rounds them down would
// otherwise see the next window's requests while it still counts the last.
const resetMargin = time.Second

// NewHeaderPacer returns a pacer for one host.
func NewHeaderPacer() *HeaderPacer { return &HeaderPacer{} }

func (p *HeaderPacer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// changed wakes every waiter. Callers hold p.mu.
func (p *HeaderPacer) changed() {
	if p.cond != nil {
		close(p.cond)
	}
	p.cond = make(chan struct{})
}

// Wait implements Pacer. When the budget is spent and the window's end is
// more than longWait away, it calls the context's WaitHook first (so the
// caller can give its place to work for another host), and the hook's
// resume before the request leaves.
func (p *HeaderPacer) Wait(ctx context.Context) (func(int, http.Header), error) {
	var resume func() error // set while the caller has stepped aside
	p.mu.Lock()
	for {
		if p.cond == nil {
			p.cond = make(chan struct{})
		}
		now := p.now()
		var wait time.Duration
		// About to let the request go: the caller takes its place back
		// first, without the lock, and the budget is looked at again.
		if resume != nil && (p.free || (!p.known && !p.probing) || (p.known && (p.left > 0 || !now.Before(p.resetAt)))) {
			p.mu.Unlock()
			err := resume()
			resume = nil
			if err != nil {
				return nil, err
			}
			p.mu.Lock()
			continue
		}
		switch {
		case p.free:
			return p.send(), nil
		case !p.known:
			if !p.probing {
				p.probing = true
				return p.send(), nil
			}
		case !now.Before(p.resetAt):
			// A new window: its budget, less what is still in flight
			// (sent in the old window, it may be counted in the new one).
			// It ends a minute from now at the latest; its first answer
			// says when.
			p.confirmed, p.rolledAt = false, now
			p.left = max(0, p.limit-p.inflight)
			p.resetAt = now.Add(time.Minute)
			continue
		case p.left > 0:
			p.left--
			return p.send(), nil
		default:
			wait = p.resetAt.Sub(now)
			if hook := waitHookOf(ctx); hook != nil && resume == nil && wait > longWait {
				p.mu.Unlock()
				resume = hook()
				p.mu.Lock()
				continue
			}
		}
		cond := p.cond
		p.mu.Unlock()
		var wake <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			wake = t.C
		}
		select {
		case <-ctx.Done():
		case <-cond:
		case <-wake:
		}
		if t != nil {
			t.Stop()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.mu.Lock()
	}
}

// send counts a request going out and unlocks. Callers hold p.mu.
func (p *HeaderPacer) send() func(int, http.Header) {
	p.inflight++
	p.mu.Unlock()
	return p.done
}

// longWait is how long a wait for a host's budget must be before the
// caller is asked to step aside (WaitHook).
const longWait = 200 * time.Millisecond

// WaitHook, set in a call's context with WithWaitHook, is called when a
// pacer is about to hold the call back for long (its host's budget is
// spent); it returns the function to call before the request leaves, which
// may block (to take a network slot again) and fails when the caller must
// give up.
type WaitHook func() (resume func() error)

type waitHookKey struct{}

// WithWaitHook returns a context whose calls run hook when a pacer holds
// them back for long.
func WithWaitHook(ctx context.Context, hook WaitHook) context.Context {
	return context.WithValue(ctx, waitHookKey{}, hook)
}

func waitHookOf(ctx context.Context) WaitHook {
	h, _ := ctx.Value(waitHookKey{}).(WaitHook)
	return h
}

func (p *HeaderPacer) done(status int, h http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.changed()
	p.inflight--
	p.probing = false
	if status == 0 {
		return // no answer: nothing learnt
	}
	now := p.now()
	limit, lok := headerInt(h, "X-RateLimit-Limit")
	rem, rok := headerInt(h, "X-RateLimit-Remaining")
	reset, sok := headerInt(h, "X-RateLimit-Reset")
	if !lok || !rok || !sok {
		switch {
		case status == http.StatusTooManyRequests:
			// Limited without saying how: wait what it asks, or a second.
			p.known, p.free = true, false
			p.limit = max(p.limit, 1)
			p.left = 0
			p.resetAt = now.Add(hold(parseRetryAfter(h, status)))
			p.confirmed = true
			if p.limit == 1 { // no limit ever learnt from headers
				p.guessedUntil = p.resetAt
			}
		case !p.known:
			p.free = true
		case !p.guessedUntil.IsZero() && !now.Before(p.guessedUntil):
			// The hold is over and the host answers again: unpaced, as
			// before the 429, not one request a window for good.
			p.known, p.free, p.guessedUntil = false, true, time.Time{}
		}
		return
	}
	p.guessedUntil = time.Time{}
	// Reset is seconds to wait (DESIGN.md). Bounded: a host sending an
	// epoch time or milliseconds would otherwise hold it for years.
	resetAt := now.Add(time.Duration(min(reset, int(maxHold/time.Second)))*time.Second + resetMargin)
	limit = max(limit, 1) // a limit of 0 would hold it for good
	// The others in flight may have been counted by the host already or
	// not; counting them again errs on the safe side.
	left := max(0, rem-p.inflight)
	if status == http.StatusTooManyRequests {
		// Retry-After, when given, says more than the window's Reset.
		p.known, p.free, p.limit = true, false, limit
		p.left, p.resetAt, p.confirmed = 0, now.Add(hold(parseRetryAfter(h, status))), true
		return
	}
	// Which window the answer speaks of is told by when it says that
	// window ends, not by when the request left: a request sent in the
	// last moments of one window may be counted by the host in the next.
	const slack = time.Second + time.Second/2 // Reset is rounded up to whole seconds
	switch {
	case !p.known:
		// The first word from the host.
		p.left, p.resetAt, p.confirmed = left, resetAt, true
	case !p.confirmed:
		// Our window began when the last one should have ended; an answer
		// whose window ends well after that is about ours (its first
		// word), one whose window ended about then is about the last.
		if resetAt.After(p.rolledAt.Add(slack)) {
			p.left, p.resetAt, p.confirmed = min(p.left, left), resetAt, true
		}
	case resetAt.After(p.resetAt.Add(slack)):
		// A window newer than ours: the host started it before we did.
		p.left, p.resetAt = left, resetAt
	case !resetAt.Before(p.resetAt.Add(-slack)):
		// Ours.
		p.left = min(p.left, left)
	}
	// An answer about a window already over says nothing now.
	p.known, p.free, p.limit = true, false, limit
}

// hold is how long a 429 holds a host back, asked to wait d: at least a
// second (a 0 would send the next requests into the same spent window),
// the margin on top, at most maxHold.
func hold(d time.Duration) time.Duration {
	return min(max(d, time.Second)+resetMargin, maxHold)
}

func headerInt(h http.Header, name string) (int, bool) {
	if h == nil {
		return 0, false
	}
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// AIMD pacing defaults, for a host whose limit is not documented
// (EstateGuru).
const (
	// AIMDStart is the first rate: as conservative as the old fixed rate.
	AIMDStart = 4.0
	// AIMDMin is the floor after repeated cuts.
	AIMDMin = 0.5
	// AIMDMax bounds the ramp when no ceiling is set.
	AIMDMax = 1000.0
)

// AIMDPacer paces a host that documents no limit, as EstateGuru does: it
// starts at a conservative rate, ramps up while the answers are clean, and
// halves the rate on a rate-limit answer (403 or 429: EstateGuru's public
// API answers a breach with 403) or a 5xx.
//
// Until the first cut, every clean answer to a request that had to wait for
// the pacer (half its spacing or more) adds Start requests a second: while
// the rate is what holds the host back, answers come at the rate, so it
// grows exponentially, doubling in well under a second from 4/s (like TCP's
// slow start). After a cut, each such answer adds 1/rate (one request a
// second more each second: additive increase). A
// request that did not wait says nothing about the rate, so a host held
// back by anything else (SYNCER_CONCURRENCY) does not ramp without bound.
// One cut per burst: answers to requests sent before the last cut do not
// cut again.
type AIMDPacer struct {
	Start, Min, Max float64
	// OnChange, if set, hears of every cut and of every doubling of the
	// rate since the last report (called with the pacer's lock held: it
	// must not call back into the pacer).
	OnChange func(RateChange)
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu        stdsync.Mutex
	rate      float64
	reported  float64
	next      time.Time // the earliest the next request may leave
	cutAt     time.Time // when the last cut happened
	slowStart bool
	init      bool
}

// NewAIMDPacer returns a pacer starting at AIMDStart requests a second and
// never going over ceiling (0: AIMDMax).
func NewAIMDPacer(ceiling float64, onChange func(RateChange)) *AIMDPacer {
	p := &AIMDPacer{Start: AIMDStart, Min: AIMDMin, Max: AIMDMax, OnChange: onChange}
	if ceiling > 0 {
		p.Max = ceiling
		p.Start = min(p.Start, ceiling)
		p.Min = min(p.Min, ceiling)
	}
	return p
}

// Rate is the current rate, in requests per second.
func (p *AIMDPacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setup()
	return p.rate
}

func (p *AIMDPacer) setup() {
	if p.init {
		return
	}
	p.init = true
	if p.Start <= 0 {
		p.Start = AIMDStart
	}
	if p.Max <= 0 {
		p.Max = AIMDMax
	}
	if p.Min <= 0 {
		p.Min = min(AIMDMin, p.Max)
	}
	p.rate, p.reported, p.slowStart = p.Start, p.Start, true
}

func (p *AIMDPacer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Wait implements Pacer: it reserves the next send time and sleeps until
// it.
func (p *AIMDPacer) Wait(ctx context.Context) (func(int, http.Header), error) {
	p.mu.Lock()
	p.setup()
	now := p.now()
	at := now
	if p.next.After(at) {
		at = p.next
	}
	spacing := time.Duration(float64(time.Second) / p.rate)
	p.next = at.Add(spacing)
	// Held back by the rate, not by a chance meeting with another request:
	// only then does a clean answer say the rate could be higher.
	waited := at.Sub(now) >= spacing/2
	p.mu.Unlock()
	if at.After(now) {
		t := time.NewTimer(at.Sub(now))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return func(status int, _ http.Header) { p.done(at, waited, status) }, nil
}

func (p *AIMDPacer) done(sentAt time.Time, waited bool, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case status == http.StatusTooManyRequests || status == http.StatusForbidden || status >= 500:
		if sentAt.Before(p.cutAt) {
			return // the same burst as the last cut
		}
		from := p.rate
		p.rate = max(p.Min, p.rate/2)
		p.slowStart = false
		now := p.now()
		p.cutAt = now
		// Requests already spaced at the old rate are spaced at the new one.
		p.next = now.Add(time.Duration(float64(time.Second) / p.rate))
		p.reported = p.rate
		reason := "server_error"
		if status < 500 {
			reason = "rate_limited"
		}
		if p.OnChange != nil && from != p.rate {
			p.OnChange(RateChange{From: from, To: p.rate, Reason: reason, Status: status})
		}
	case status >= 200 && status < 400 && waited:
		from := p.rate
		if p.slowStart {
			p.rate += p.Start
		} else {
			p.rate += 1 / p.rate
		}
		p.rate = min(p.rate, p.Max)
		if p.OnChange != nil && (p.rate >= 2*p.reported || (p.rate == p.Max && from < p.Max)) {
			p.OnChange(RateChange{From: p.reported, To: p.rate, Reason: "clean_answers"})
			p.reported = p.rate
		}
	}
}
