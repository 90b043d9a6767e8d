package provider

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	stdsync "sync"
	"testing"
	"time"
)

// limitServer enforces limit requests per window, as EverReal does per
// minute, with its X-RateLimit-* headers on every answer.
type limitServer struct {
	limit  int
	window time.Duration

	mu      stdsync.Mutex
	start   time.Time
	count   int
	ok      int
	refused int
}

func (s *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.start) >= s.window {
		s.start, s.count = now.Truncate(s.window), 0
	}
	s.count++
	over := s.count > s.limit
	if over {
		s.refused++
	} else {
		s.ok++
	}
	reset := int(math.Ceil(s.start.Add(s.window).Sub(now).Seconds()))
	left := max(0, s.limit-s.count)
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(left))
	h.Set("X-RateLimit-Reset", strconv.Itoa(max(1, reset)))
	if over {
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"too_many_requests"}`))
		return
	}
	w.Write([]byte(`{}`))
}

func get(url string) Request {
	return Request{Provider: "prov", Op: "op", New: func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	}}
}

// burst sends n requests from workers goroutines and returns the errors.
func burst(t *testing.T, h *HTTP, url string, n, workers int) []error {
	t.Helper()
	jobs := make(chan int)
	var mu stdsync.Mutex
	var errs []error
	var wg stdsync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if _, err := h.Do(context.Background(), get(url)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return errs
}

func TestHeaderPacerNeverDrawsA429(t *testing.T) {
	// Windows of 3 s: X-RateLimit-Reset is in whole seconds, so a window
	// must be a few of them for its answers to tell it from the last one.
	srv := &limitServer{limit: 10, window: 3 * time.Second}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	// No retries: a 429 would be a failed call.
	h := &HTTP{Client: ts.Client(), Pacer: NewHeaderPacer()}
	errs := burst(t, h, ts.URL, 25, 8)
	if len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	if srv.refused != 0 {
		t.Fatalf("the server answered 429 %d times, want 0", srv.refused)
	}
	if got, want := srv.ok, 25; got != want {
		t.Fatalf("server answered %d requests, want %d", got, want)
	}
}

func TestHeaderPacerLeavesAHostWithoutHeadersAlone(t *testing.T) {
	var mu stdsync.Mutex
	inflight := 0
	together := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			w.Write([]byte(`{}`))
			return
		}
		mu.Lock()
		inflight++
		if inflight == 4 {
			close(together)
		}
		mu.Unlock()
		select {
		case <-together:
			w.Write([]byte(`{}`))
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	h := &HTTP{Client: ts.Client(), Pacer: NewHeaderPacer()}
	if _, err := h.Do(context.Background(), get(ts.URL+"/first")); err != nil {
		t.Fatal(err)
	}
	// The first answer had no headers, so the host is not paced: four
	// requests are answered only when all four are in flight together.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg stdsync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Do(ctx, get(ts.URL+"/together")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("requests to a host without rate headers were held back: %v", err)
	}
}

func TestHeaderPacerWaitsOutA429(t *testing.T) {
	var mu stdsync.Mutex
	calls := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		h := w.Header()
		h.Set("X-RateLimit-Limit", "300")
		h.Set("X-RateLimit-Reset", "1")
		if n == 1 {
			// Another client spent the budget.
			h.Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		h.Set("X-RateLimit-Remaining", "299")
		w.Write([]byte(`{}`))
	}))
	defer ts.Close()
	p := NewHeaderPacer()
	h := &HTTP{Client: ts.Client(), Pacer: p}
	if _, err := h.Do(context.Background(), get(ts.URL)); KindOf(err) != KindTransient {
		t.Fatalf("first call: %v, want the 429", err)
	}
	p.mu.Lock()
	left := p.left
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("after a 429 the pacer has %d requests left, want 0", left)
	}
	// A cancelled context ends the wait for the next window.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Do(ctx, get(ts.URL)); err == nil {
		t.Fatal("a call with a cancelled context went out while the budget was spent")
	}
	if _, err := h.Do(context.Background(), get(ts.URL)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// aimdServer answers with the statuses it is given, in turn, then 200.
func aimdServer(t *testing.T, statuses ...int) *httptest.Server {
	var mu stdsync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		status := http.StatusOK
		if len(statuses) > 0 {
			status, statuses = statuses[0], statuses[1:]
		}
		mu.Unlock()
		w.WriteHeader(status)
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestAIMDPacerRampsWhileClean(t *testing.T) {
	ts := aimdServer(t)
	var changes []RateChange
	p := NewAIMDPacer(0, func(c RateChange) { changes = append(changes, c) })
	p.Start = 40 // a fast test: the ramp, not the wait, is what is tested
	h := &HTTP{Client: ts.Client(), Pacer: p}
	if errs := burst(t, h, ts.URL, 40, 4); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if got := p.Rate(); got <= 40 {
		t.Fatalf("rate after 40 clean answers = %v, want more than the start, 40", got)
	}
	if len(changes) == 0 || changes[0].Reason != "clean_answers" {
		t.Fatalf("changes = %+v, want a clean_answers ramp reported", changes)
	}
}

func TestAIMDPacerCutsOnRateLimitAnswers(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusForbidden, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			ts := aimdServer(t, status)
			var changes []RateChange
			p := NewAIMDPacer(0, func(c RateChange) { changes = append(changes, c) })
			p.Start = 40
			before := p.Rate()
			h := &HTTP{Client: ts.Client(), Pacer: p}
			if _, err := h.Do(context.Background(), get(ts.URL)); err == nil {
				t.Fatalf("a %d answer was not an error", status)
			}
			if got, want := p.Rate(), before/2; got != want {
				t.Fatalf("rate after a %d = %v, want %v", status, got, want)
			}
			want := "rate_limited"
			if status >= 500 {
				want = "server_error"
			}
			if len(changes) != 1 || changes[0].Reason != want || changes[0].Status != status {
				t.Fatalf("changes = %+v, want one %s cut", changes, want)
			}
			// After a cut, clean answers ramp additively: slower than
			// before the cut.
			for range 5 {
				if _, err := h.Do(context.Background(), get(ts.URL)); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.Rate(); got > before/2+5 {
				t.Fatalf("rate after the cut and 5 clean answers = %v, want at most %v", got, before/2+5)
			}
		})
	}
}

func TestAIMDPacerCutsOncePerBurst(t *testing.T) {
	p := NewAIMDPacer(0, nil)
	p.Start = 100
	var dones []func(int, http.Header)
	for range 5 {
		done, err := p.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	for _, done := range dones {
		done(http.StatusTooManyRequests, nil)
	}
	if got, want := p.Rate(), 50.0; got != want {
		t.Fatalf("rate after five refusals of one burst = %v, want one cut to %v", got, want)
	}
}

func TestAIMDPacerKeepsUnderTheCeiling(t *testing.T) {
	ts := aimdServer(t)
	p := NewAIMDPacer(50, nil)
	p.Start = 40
	h := &HTTP{Client: ts.Client(), Pacer: p}
	if errs := burst(t, h, ts.URL, 40, 4); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if got := p.Rate(); got > 50 {
		t.Fatalf("rate = %v, over the ceiling 50", got)
	}
}

func rateHeaders(limit, remaining, reset int) http.Header {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.Itoa(reset))
	return h
}

// Answers are placed in their window by the end they name, not by when
// their request left: one sent in the last moments of a window and counted
// by the host in the next lowers the next window's budget; one about the
// window that ended changes nothing.
func TestHeaderPacerPlacesAnswersInTheirWindow(t *testing.T) {
	start := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	now := start
	p := NewHeaderPacer()
	p.Now = func() time.Time { return now }
	ctx := context.Background()
	wait := func() func(int, http.Header) {
		t.Helper()
		done, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return done
	}
	wait()(http.StatusOK, rateHeaders(10, 9, 10)) // the window ends at +10 s
	var late []func(int, http.Header)
	for range 9 { // the rest of the budget goes out at +9 s
		now = start.Add(9 * time.Second)
		late = append(late, wait())
	}
	// The window is over (and the margin for a Reset rounded down): the
	// new one's budget is the limit less the nine still in flight, so one
	// more may go.
	now = start.Add(10*time.Second + resetMargin + 500*time.Millisecond)
	late = append(late, wait())
	// One of the nine was counted in the new window, which has 5 left and
	// ends 10 s from now: with 9 others in flight, nothing may go.
	late[0](http.StatusOK, rateHeaders(10, 5, 10))
	// Another was counted in the old window just before it ended.
	late[1](http.StatusOK, rateHeaders(10, 0, 1))
	p.mu.Lock()
	left, resetAt := p.left, p.resetAt
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("budget left = %d, want 0", left)
	}
	if want := now.Add(10*time.Second + resetMargin); !resetAt.Equal(want) {
		t.Fatalf("window ends at +%s, want +%s (the new window's end)", resetAt.Sub(start), want.Sub(start))
	}
}

// While a host's budget is spent, the caller is asked to step aside (so its
// slot can serve another host) and takes its place back before its request
// leaves; a request that goes at once is never asked.
func TestHeaderPacerLetsAHeldCallerStepAside(t *testing.T) {
	p := NewHeaderPacer()
	var events []string
	ctx := WithWaitHook(context.Background(), func() func() error {
		events = append(events, "step aside")
		return func() error {
			events = append(events, "resume")
			return nil
		}
	})
	done, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done(http.StatusOK, rateHeaders(2, 1, 1)) // one left; the window ends within a second
	done, err = p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("events %v for a request within the budget, want none", events)
	}
	done(http.StatusOK, rateHeaders(2, 0, 1))
	done, err = p.Wait(ctx) // held until the window ends
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, "sent")
	done(http.StatusOK, rateHeaders(2, 1, 60))
	if got, want := fmt.Sprint(events), "[step aside resume sent]"; got != want {
		t.Fatalf("events %s, want %s", got, want)
	}
}

// fakeClockPacer is a HeaderPacer on a clock the test moves, and the means
// to ask it for a request that must go at once, or must not.
type fakeClockPacer struct {
	t   *testing.T
	p   *HeaderPacer
	now time.Time
}

func newFakeClockPacer(t *testing.T) *fakeClockPacer {
	f := &fakeClockPacer{t: t, p: NewHeaderPacer(), now: time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)}
	f.p.Now = func() time.Time { return f.now }
	return f
}

// send asks for a request that must go at once (the clock does not move
// while it waits) and answers it.
func (f *fakeClockPacer) send(status int, h http.Header) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done, err := f.p.Wait(ctx)
	if err != nil {
		f.t.Fatalf("at +%s a request was held back: %v", f.now.Sub(time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)), err)
	}
	done(status, h)
}

// held reports whether a request would be held back now.
func (f *fakeClockPacer) held() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done, err := f.p.Wait(ctx)
	if err != nil {
		return true
	}
	done(0, nil)
	return false
}

// A Reset the host did not mean as seconds (an epoch time, milliseconds)
// or a limit of 0 holds a host for at most maxHold, not for years or for
// good: the pacer lives as long as the daemon.
func TestHeaderPacerBoundsAnOddResetOrLimit(t *testing.T) {
	for _, h := range []http.Header{rateHeaders(300, 0, 1767225600), rateHeaders(300, 0, 60000), rateHeaders(0, 0, 30)} {
		f := newFakeClockPacer(t)
		f.send(http.StatusOK, h)
		f.now = f.now.Add(maxHold + resetMargin)
		f.send(http.StatusOK, rateHeaders(300, 298, 60))
	}
}

// A 429 without rate headers, from a host that never sent them, holds it
// for what the 429 asks; after that, answers without headers leave it
// unpaced again, not at one request a window for good.
func TestHeaderPacerForgetsALimitItGuessed(t *testing.T) {
	f := newFakeClockPacer(t)
	f.send(http.StatusOK, nil) // no headers: not paced
	f.send(http.StatusTooManyRequests, http.Header{"Retry-After": {"5"}})
	if !f.held() {
		t.Fatal("a request went out during the 429's hold")
	}
	f.now = f.now.Add(10 * time.Second)
	f.send(http.StatusOK, nil)
	for range 5 {
		f.send(http.StatusOK, nil)
	}
}

// A 429 whose Reset is 0 still holds the host for a second and the
// margin: the window it speaks of is spent, and a host that rounds down
// is still counting it.
func TestHeaderPacerHoldsAfterA429WithResetZero(t *testing.T) {
	f := newFakeClockPacer(t)
	f.send(http.StatusOK, rateHeaders(300, 299, 30))
	f.send(http.StatusTooManyRequests, rateHeaders(300, 0, 0))
	if !f.held() {
		t.Fatal("a request went out at once after a 429 with Reset 0")
	}
	f.now = f.now.Add(time.Second + resetMargin)
	f.send(http.StatusOK, rateHeaders(300, 299, 60))
}
