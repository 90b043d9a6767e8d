package sync

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	stdsync "sync"
	"time"

	"github.com/robfig/cron/v3"
)

// scheduleParser takes five-field specs ("0 * * * *"), descriptors
// ("@hourly", "@every 1h") and a CRON_TZ= or TZ= prefix.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks a SYNCER_SCHEDULE value. Times without CRON_TZ= are
// UTC.
func ParseSchedule(spec string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("empty")
	}
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") && !strings.HasPrefix(spec, "@") {
		spec = "CRON_TZ=UTC " + spec
	}
	sched, err := scheduleParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok && every.Delay < time.Second {
		return nil, fmt.Errorf("@every needs at least 1s")
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
		// SkipIfStillRunning first, then Recover: the other order lets one
		// panic stop the job for good (robfig/cron v3.0.1).
		cron.WithChain(cron.SkipIfStillRunning(clog), cron.Recover(clog)),
	)
	// running tracks the run at start, which cron's own Stop does not know of.
	var running stdsync.WaitGroup
	job := c.Schedule(s.Schedule, cron.FuncJob(func() {
		if runCtx.Err() != nil {
			return
		}
		if _, err := s.Syncer.Run(runCtx, TriggerSchedule, nil); err != nil {
			log.Error("sync run failed", "error", err.Error())
		}
	}))
	c.Start()
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
	log.Info("stopping: cancelling the run in progress")
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

// cronLogger sends robfig/cron's log lines to slog. Its Info carries the
// "skip" message of SkipIfStillRunning, which a person wants to see.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("sync run skipped: the previous run is still going")
		return
	}
	l.log.Debug("cron: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "error", fmt.Sprint(err))...)
}
