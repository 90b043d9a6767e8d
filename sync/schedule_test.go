package sync

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

func TestParseSchedule(t *testing.T) {
	for _, spec := range []string{
		"@every 1h", "@every 1s", "@hourly", "@daily", "0 * * * *", "*/5 * * * *",
		"CRON_TZ=Europe/Berlin 0 3 * * *", "TZ=UTC @daily", "  @every 30m  ",
	} {
		if _, err := ParseSchedule(spec); err != nil {
			t.Errorf("ParseSchedule(%q): %v", spec, err)
		}
	}
	for _, spec := range []string{
		"", "every hour", "61 * * * *", "* * * *", "0 0 * * * *",
		// cron.Every would quietly make each of these "every second".
		"@every 500ms", "@every 0s", "@every -1h", "@every 1500ms",
		// robfig/cron panics on a time zone with nothing after it.
		"CRON_TZ=UTC", "TZ=Europe/Berlin",
		"CRON_TZ=Nowhere/Atlantis 0 * * * *",
	} {
		if _, err := ParseSchedule(spec); err == nil {
			t.Errorf("ParseSchedule(%q) succeeded, want an error", spec)
		}
	}
}

func TestScheduleIsUTCUnlessTold(t *testing.T) {
	// Asked from another zone, the schedule still answers in UTC: what it
	// means does not depend on the machine's or the caller's zone.
	from := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).In(time.FixedZone("UTC+5", 5*3600))
	for _, tc := range []struct {
		spec string
		want time.Time
	}{
		{"@daily", time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)},
		{"0 3 * * *", time.Date(2024, 3, 2, 3, 0, 0, 0, time.UTC)},
		{"CRON_TZ=Europe/Berlin 0 3 * * *", time.Date(2024, 3, 2, 2, 0, 0, 0, time.UTC)}, // CET is UTC+1 in March
	} {
		sched, err := ParseSchedule(tc.spec)
		if err != nil {
			t.Fatalf("ParseSchedule(%q): %v", tc.spec, err)
		}
		if got := sched.Next(from).UTC(); !got.Equal(tc.want) {
			t.Errorf("%q: next run after %s = %s, want %s", tc.spec, from.Format(time.RFC3339), got.Format(time.RFC3339), tc.want.Format(time.RFC3339))
		}
	}
}

// TestSchedulerRecordsAProviderPanicAsAFailedRun: a client that panics fails
// its run, and the next scheduled run works.
func TestSchedulerRecordsAProviderPanicAsAFailedRun(t *testing.T) {
	st := newScheduleStore(t)
	var calls atomic.Int32
	eg := &fakeEstateGuru{investments: func(ctx context.Context) (*estateguru.Answer, error) {
		if calls.Add(1) == 1 {
			panic("the client broke")
		}
		return sampleAnswer(), nil
	}}
	logs := &logBuffer{}
	s := &Scheduler{Syncer: newTestSyncer(st, eg, logs), Schedule: every(20 * time.Millisecond), Log: logs.logger()}
	stop := startScheduler(t, s)
	waitFor(t, "a run after the panic to succeed", func() bool { return hasStatus(runsOf(t, st), store.RunOK) })
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	runs := runsOf(t, st)
	if got, want := runs[0].status, store.RunFailed; got != want {
		t.Fatalf("the panicking run's status = %q, want %q (runs: %v)", got, want, runs)
	}
	if runs[0].finished == "" {
		t.Fatalf("the panicking run has no finished_at")
	}
	if !strings.Contains(logs.String(), "the client broke") {
		t.Fatalf("the panic is not logged:\n%s", logs)
	}
}

// TestSchedulerGoesOnAfterAPanicEscapesTheRun: a panic outside any one
// connection reaches cron's chain; the run is closed as failed and the
// schedule goes on. With Recover outside SkipIfStillRunning, every run after
// this one would be skipped.
func TestSchedulerGoesOnAfterAPanicEscapesTheRun(t *testing.T) {
	st := newScheduleStore(t)
	ps := &panickyStore{Store: st}
	eg := &fakeEstateGuru{investments: func(context.Context) (*estateguru.Answer, error) { return sampleAnswer(), nil }}
	logs := &logBuffer{}
	syncer := newTestSyncer(st, eg, logs)
	syncer.Store = ps
	s := &Scheduler{Syncer: syncer, Schedule: every(20 * time.Millisecond), Log: logs.logger()}
	stop := startScheduler(t, s)
	waitFor(t, "a run after the panic to succeed", func() bool { return hasStatus(runsOf(t, st), store.RunOK) })
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	runs := runsOf(t, st)
	if got, want := runs[0].status, store.RunFailed; got != want {
		t.Fatalf("the panicking run's status = %q, want %q (runs: %v)", got, want, runs)
	}
	if runs[0].finished == "" {
		t.Fatalf("the panicking run has no finished_at")
	}
	if !strings.Contains(logs.String(), "sync run panicked; the schedule goes on") {
		t.Fatalf("the panic is not logged:\n%s", logs)
	}
}

// TestSchedulerSkipsARunWhileOneIsGoing: runs never overlap, and a skipped
// one is logged.
func TestSchedulerSkipsARunWhileOneIsGoing(t *testing.T) {
	st := newScheduleStore(t)
	release := make(chan struct{})
	var inFlight, maxInFlight atomic.Int32
	eg := &fakeEstateGuru{investments: func(ctx context.Context) (*estateguru.Answer, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return sampleAnswer(), nil
	}}
	logs := &logBuffer{}
	s := &Scheduler{Syncer: newTestSyncer(st, eg, logs), Schedule: every(20 * time.Millisecond), OnStart: true, Log: logs.logger()}
	stop := startScheduler(t, s)
	waitFor(t, "a skipped run to be logged", func() bool {
		return strings.Contains(logs.String(), "sync run skipped: the previous run is still going")
	})
	close(release)
	waitFor(t, "the held run to finish", func() bool { return hasStatus(runsOf(t, st), store.RunOK) })
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if got, want := maxInFlight.Load(), int32(1); got != want {
		t.Fatalf("runs at once = %d, want %d", got, want)
	}
}

// TestSchedulerStopInterruptsTheRunInProgress: when the context ends, the run
// in progress is cancelled and recorded as interrupted, with its
// finished_at, and Run returns without error.
func TestSchedulerStopInterruptsTheRunInProgress(t *testing.T) {
	st := newScheduleStore(t)
	entered := make(chan struct{})
	eg := &fakeEstateGuru{investments: func(ctx context.Context) (*estateguru.Answer, error) {
		close(entered)
		<-ctx.Done() // a provider that never answers
		return nil, ctx.Err()
	}}
	ready := make(chan struct{})
	logs := &logBuffer{}
	s := &Scheduler{
		Syncer: newTestSyncer(st, eg, logs), Schedule: every(time.Hour), OnStart: true,
		StopTimeout: 10 * time.Second, Log: logs.logger(), Ready: func() { close(ready) },
	}
	if err := s.Alive(context.Background()); err == nil {
		t.Fatalf("Alive before Run = nil, want an error")
	}
	stop := startScheduler(t, s)
	waitClosed(t, "READY", ready)
	if err := s.Alive(context.Background()); err != nil {
		t.Fatalf("Alive while running: %v", err)
	}
	waitClosed(t, "the run to reach the provider", entered)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := s.Alive(context.Background()); err == nil {
		t.Fatalf("Alive after Run returned = nil, want an error")
	}

	runs := runsOf(t, st)
	if got, want := len(runs), 1; got != want {
		t.Fatalf("runs = %d, want %d (%v)", got, want, runs)
	}
	if got, want := runs[0].status, store.RunInterrupted; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
	if got, want := runs[0].trigger, TriggerSchedule; got != want {
		t.Fatalf("run trigger = %q, want %q", got, want)
	}
	if runs[0].finished == "" {
		t.Fatalf("the interrupted run has no finished_at")
	}
}

// every is a schedule faster than cron's one-second floor, for tests.
type every time.Duration

func (d every) Next(t time.Time) time.Time { return t.Add(time.Duration(d)) }

type fakeEstateGuru struct {
	investments func(ctx context.Context) (*estateguru.Answer, error)
}

func (f *fakeEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	return provider.Token{}, errors.New("fake: no refresh expected (the stored access token is fresh)")
}

func (f *fakeEstateGuru) Fetch(ctx context.Context, _ provider.Secret) (Snapshot, error) {
	return answered(f.investments(ctx))
}

func sampleAnswer() *estateguru.Answer {
	return estateguru.NewAnswer([]byte(`{"currency":"EUR","cash":"1.00","investments":[]}`), "")
}

// panickyStore panics in the first FinishRun: a panic in the run itself,
// after its record was started, outside any connection.
type panickyStore struct {
	*store.Store
	panicked atomic.Bool
}

func (p *panickyStore) FinishRun(ctx context.Context, runID int64, status string, ok, failed int) error {
	if !p.panicked.Swap(true) {
		panic("the store broke")
	}
	return p.Store.FinishRun(ctx, runID, status, ok, failed)
}

// newScheduleStore is a real store with one EstateGuru connection whose
// access token is good for an hour.
func newScheduleStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok := provider.Token{Access: "access-1", Refresh: "refresh-1", AccessExpiresAt: time.Now().Add(time.Hour)}
	if _, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", tok); err != nil {
		t.Fatal(err)
	}
	return st
}

// answered is a fake's answer as the EstateGuru adapter returns it.
func answered(a *estateguru.Answer, err error) (Snapshot, error) {
	if err != nil {
		return nil, err
	}
	return estateGuruAnswer{a}, nil
}

func newTestSyncer(st Store, eg Provider, logs *logBuffer) *Syncer {
	return &Syncer{
		Store:     st,
		Providers: Providers{estateguru.Name: func(string) Provider { return eg }},
		Log:       logs.logger(),
		LockWait:  5 * time.Second,
	}
}

// startScheduler runs s in the background; stop cancels it and returns
// Run's error, failing the test if Run does not return.
func startScheduler(t *testing.T, s *Scheduler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() error {
		t.Helper()
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatalf("the scheduler did not stop")
			return nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	return stop
}

type runRow struct{ trigger, status, finished string }

func runsOf(t *testing.T, st *store.Store) []runRow {
	t.Helper()
	db, err := store.OpenReports(context.Background(), st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT trigger, status, coalesce(finished_at, '') FROM sync_runs ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []runRow
	for rows.Next() {
		var r runRow
		if err := rows.Scan(&r.trigger, &r.status, &r.finished); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func hasStatus(runs []runRow, status string) bool {
	for _, r := range runs {
		if r.status == status {
			return true
		}
	}
	return false
}

// waitFor polls cond; the bound only keeps a broken scheduler from hanging
// the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
	}
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A stop with no run going on says so plainly, without "cancelling the run
// in progress".
func TestSchedulerStopWithNoRunSaysNothingOfOne(t *testing.T) {
	st := newScheduleStore(t)
	ready := make(chan struct{})
	logs := &logBuffer{}
	s := &Scheduler{
		Syncer: newTestSyncer(st, &fakeEstateGuru{}, logs), Schedule: every(time.Hour),
		StopTimeout: 10 * time.Second, Log: logs.logger(), Ready: func() { close(ready) },
	}
	stop := startScheduler(t, s)
	waitClosed(t, "READY", ready)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if out := logs.String(); strings.Contains(out, "cancelling") || !strings.Contains(out, "stopping") {
		t.Fatalf("the log should say it stops, and cancels nothing:\n%s", out)
	}
}
