package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"syncer/sync"
)

// cmdSync is syncer with no subcommand: the daemon, or one run with -once.
func cmdSync(e env, args []string) error {
	fs := newFlagSet("syncer", e)
	once := fs.Bool("once", false, "sync now and exit")
	var names stringList
	fs.Var(&names, "connection", "sync only this connection (repeatable)")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (commands: connect, import, status, disconnect, query, backup, demo)", fs.Arg(0))
	}
	if len(names) > 0 && !*once {
		return usagef("-connection works only with -once")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	// Checked again here (loadConfig already did) to have the schedule
	// itself; any error was reported above, before the data directory.
	schedule, err := sync.ParseSchedule(a.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("%w: SYNCER_SCHEDULE: %v", errConfig, err)
	}
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	if n, err := a.store.CloseAbandonedRuns(e.ctx); err != nil {
		return err
	} else if n > 0 {
		a.log.Warn("marked runs left open by a stopped process as interrupted", "runs", n)
	}
	s := a.syncer()

	if *once {
		sum, err := s.Run(e.ctx, sync.TriggerOnce, names)
		if err != nil {
			if errors.Is(err, sync.ErrNoConnection) {
				return usagef("%v", err)
			}
			return err
		}
		return summaryError(sum)
	}

	sched := &sync.Scheduler{
		Syncer:      s,
		Schedule:    schedule,
		OnStart:     a.cfg.SyncOnStart,
		StopTimeout: 10 * time.Second,
		Log:         a.log,
		Ready: func() {
			// READY=1 once the stores are open and the schedule is set; a
			// no-op outside systemd.
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
		},
	}
	go watchdog(e.ctx, a)
	err = sched.Run(e.ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// summaryError turns a run's outcome into the exit code: 1 when a person
// should look.
func summaryError(sum sync.Summary) error {
	if sum.NeedsAttention() {
		return attentionError{fmt.Sprintf("run %d %s: %d ok, %d failed, %d need re-connecting (see `syncer status`)",
			sum.RunID, sum.Status, sum.OK, sum.Failed, sum.NeedsReauth)}
	}
	return nil
}

// watchdog pings systemd while the database answers. A hung process stops
// pinging and systemd restarts it. Nothing happens outside systemd.
func watchdog(ctx context.Context, a *app) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pingCtx, cancel := context.WithTimeout(ctx, interval/3)
		err := a.store.Ping(pingCtx)
		cancel()
		if err != nil {
			a.log.Error("watchdog: database does not answer; not pinging systemd", "error", err.Error())
			continue
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}
