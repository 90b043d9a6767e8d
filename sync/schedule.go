package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// scheduleParser takes five-field specs ("0 * * * *"), descriptors
// ("@hourly", "@every 1h") and a CRON_TZ= or TZ= prefix.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks a SYNCER_SCHEDULE value. Times without CRON_TZ= are
// UTC, descriptors ("@daily") included.
func ParseSchedule(spec string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty")
	}
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		// robfig/cron v3.0.1 slices up to the first space and panics when
		// there is none ("CRON_TZ=UTC" alone).
		if !strings.Contains(spec, " ") {
			return nil, fmt.Errorf("%s names a time zone but no schedule after it", spec)
		}
	} else {
		// Without this, descriptors would be read in the machine's local
		// time zone.
		spec = "CRON_TZ=UTC " + spec
	}
	sched, err := scheduleParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if _, ok := sched.(cron.ConstantDelaySchedule); ok {
		// cron.Every silently turns anything under a second (0s, -1h,
		// 500ms) into 1s and drops fractions; say so instead.
		text := strings.TrimSpace(spec[strings.Index(spec, "@every")+len("@every"):])
		d, err := time.ParseDuration(text)
		if err != nil {
			return nil, err
		}
		if d < time.Second || d%time.Second != 0 {
			return nil, fmt.Errorf("@every needs whole seconds, at least 1s (got %s)", text)
		}
	}
	return sched, nil
}

// Scheduler runs a sync on a schedule until its context ends.
type Scheduler struct {
	Syncer   *Syncer
	Schedule cron.Schedule
	// OnStart runs a sync as soon as the scheduler starts.
	OnStart bool
	// StopTimeout bounds the wait for a run in progress once the context
	// ends; the run's context is cancelled at once, so this is the time it
	// takes to record what was interrupted.
	StopTimeout time.Duration
	Log         *slog.Logger
	// Ready is called once the schedule is set (systemd READY=1).
	Ready func()

	// cron is set while the schedule is served: from start until the
	// context ends.
	cron atomic.Pointer[cron.Cron]
}

// Run runs the schedule until ctx ends, then cancels the run in progress,
// waits for it up to StopTimeout, and returns.
func (s *Scheduler) Run(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runCtx, cancelRuns := context.WithCancel(ctx)
	defer cancelRuns()

	clog := cronLogger{log}
	c := cron.New(
		cron.WithLocation(time.UTC),
		cron.WithLogger(clog),
		// SkipIfStillRunning outside, Recover inside: the other order lets
		// one panic keep Skip's token for good, and every later run is
		// skipped (robfig/cron v3.0.1).
		cron.WithChain(cron.SkipIfStillRunning(clog), cron.Recover(clog)),
	)
	// running tracks the run at start, which cron's own Stop does not know of.
	var running stdsync.WaitGroup
	var active atomic.Int32 // runs going on now, for the stopping message
	job := c.Schedule(s.Schedule, cron.FuncJob(func() {
		if runCtx.Err() != nil {
			return
		}
		active.Add(1)
		defer active.Add(-1)
		if _, err := s.Syncer.Run(runCtx, TriggerSchedule, nil); err != nil {
			log.Error("sync run failed", "error", err.Error())
		}
	}))
	c.Start()
	s.cron.Store(c)
	next := c.Entry(job).Next
	log.Info("scheduler started", "next_run", next.UTC().Format(time.RFC3339))
	if s.Ready != nil {
		s.Ready()
	}
	if s.OnStart {
		// Through the same chain, so a scheduled run that comes due while
		// this one goes on is skipped, not run beside it.
		running.Add(1)
		go func() {
			defer running.Done()
			c.Entry(job).WrappedJob.Run()
		}()
	}

	<-ctx.Done()
	s.cron.Store(nil)
	if active.Load() > 0 {
		log.Info("stopping: cancelling the run in progress")
	} else {
		log.Info("stopping")
	}
	cancelRuns()
	stopped := make(chan struct{})
	go func() {
		<-c.Stop().Done()
		running.Wait()
		close(stopped)
	}()
	timeout := s.StopTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	select {
	case <-stopped:
		log.Info("scheduler stopped")
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("a sync run did not stop within %s", timeout)
	}
}

// Alive reports whether the schedule is being served: Run has set it up,
// is not stopping, and cron's loop answers before ctx ends. The daemon's
// watchdog pings systemd only while it does.
func (s *Scheduler) Alive(ctx context.Context) error {
	c := s.cron.Load()
	if c == nil {
		return errors.New("scheduler: not running")
	}
	// Entries asks cron's loop for a snapshot while it runs: an answer
	// means the loop still turns. If it never answers, this goroutine stays
	// blocked, but by then the watchdog has stopped pinging and systemd
	// restarts the process.
	answered := make(chan struct{})
	go func() {
		c.Entries()
		close(answered)
	}()
	select {
	case <-answered:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler: its loop does not answer: %w", ctx.Err())
	}
}

// cronLogger sends robfig/cron's log lines to slog. Its Info carries the
// "skip" message of SkipIfStillRunning and its Error the panics Recover
// caught, which a person wants to see; the rest is debug chatter.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("sync run skipped: the previous run is still going")
		return
	}
	l.log.Debug("cron: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	if msg == "panic" {
		// A run started before the panic was closed as failed by
		// Syncer.Run; the schedule itself goes on.
		l.log.Error("sync run panicked; the schedule goes on", append([]any{"error", fmt.Sprint(err)}, kv...)...)
		return
	}
	l.log.Error("cron: "+msg, append(kv, "error", fmt.Sprint(err))...)
}
