package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
)

// setupSync is syncer with no command: the daemon, or one run with -once.
func setupSync(fs *flag.FlagSet) func(e env, args []string) error {
	once := fs.Bool("once", false, "sync now and exit")
	var names stringList
	fs.Var(&names, "connection", "with -once: sync only the connection of this `name` (repeatable)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	return func(e env, args []string) error {
		if *showVersion {
			printVersion(e.stdout)
			return nil
		}
		return syncMain(e, args, *once, names)
	}
}

func syncMain(e env, args []string, once bool, names stringList) error {
	if len(args) > 0 {
		msg := fmt.Sprintf("unexpected argument %q", args[0])
		if s := nearest(commandList(), args[0]); s != "" {
			msg += fmt.Sprintf(" (did you mean the command %q? commands come first)", s)
		}
		return usageError{msg: msg}
	}
	if len(names) > 0 && !once {
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
	// Start-up checks of the monitoring, before the data directory: a
	// metrics file that cannot be written, an address in use.
	if a.cfg.MetricsFile != "" {
		if err := monitor.CheckFileDir(a.cfg.MetricsFile); err != nil {
			return fmt.Errorf("%w: SYNCER_METRICS_FILE: %v", errConfig, err)
		}
	}
	var metricsServer *monitor.Server
	var healthCheck atomic.Pointer[func(context.Context) error]
	starting := func(context.Context) error { return errors.New("starting") }
	healthCheck.Store(&starting)
	if a.cfg.MetricsAddr != "" && !once {
		addr, _ := monitor.ListenAddr(a.cfg.MetricsAddr) // checked by loadConfig
		srv, err := a.metrics.Listen(addr, func(ctx context.Context) error { return (*healthCheck.Load())(ctx) })
		if err != nil {
			return fmt.Errorf("%w: SYNCER_METRICS_ADDR: cannot listen on %s: %v", errConfig, addr, err)
		}
		metricsServer = srv
	}
	w, err := a.newWatcher(!once)
	if err != nil {
		return err
	}
	if err := a.openStore(e.ctx); err != nil {
		if e.ctx.Err() != nil {
			// Stopped while waiting for the databases: nothing was done,
			// which is what was asked.
			a.log.Info("stopped before start-up finished")
			return nil
		}
		return err
	}
	if n, err := a.store.CloseAbandonedRuns(e.ctx); err != nil {
		return err
	} else if n > 0 {
		a.log.Warn("marked runs left open by a stopped process as interrupted", "runs", n)
	}
	if !once {
		if err := a.checkCredentials(e.ctx); err != nil {
			return err
		}
	}
	s := a.syncer()
	s.Observer = w

	if once {
		if names, err = onceConnections(e, a, names); err != nil {
			return err
		}
		sum, err := s.Run(e.ctx, sync.TriggerOnce, names)
		if err != nil {
			if errors.Is(err, sync.ErrNoConnection) {
				return usagef("%v", withHint(err))
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
	// Both must answer: a scheduler that stopped turning, or a database
	// that hangs, means no watchdog ping (systemd restarts the service) and
	// a 503 from /healthz.
	healthy := func(ctx context.Context) error {
		if err := sched.Alive(ctx); err != nil {
			return err
		}
		return a.store.Ping(ctx)
	}
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		go watchdog(e.ctx, a.log, interval, healthy, func(state string) { _, _ = daemon.SdNotify(false, state) })
	}
	if err := a.loadConnectionMetrics(e.ctx); err != nil {
		a.log.Warn("reading connections for the metrics failed", "error", err)
	}
	if metricsServer != nil {
		healthCheck.Store(&healthy)
		go func() {
			if err := metricsServer.Serve(e.ctx); err != nil {
				a.log.Error("metrics server stopped", "error", err)
			}
		}()
		a.log.Info("serving /metrics and /healthz", "addr", metricsServer.Addr())
	}
	err = sched.Run(e.ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// checkCredentials refuses to start a daemon that could not sync a
// provider's active connections: it would only fail them run after run.
func (a *app) checkCredentials(ctx context.Context) error {
	conns, err := a.store.Connections(ctx)
	if err != nil {
		return err
	}
	for _, c := range conns {
		if c.State != store.StateActive {
			continue
		}
		if err := a.needCredentials(c.Provider); err != nil {
			return fmt.Errorf("%w (connection %q is active)", err, c.Name)
		}
	}
	return nil
}

// onceConnections checks the -connection names before a run: each named
// once, each one that exists and is not disconnected. With no connections
// at all it says how to add one.
func onceConnections(e env, a *app, names []string) ([]string, error) {
	conns, err := a.store.Connections(e.ctx)
	if err != nil {
		return nil, err
	}
	if len(conns) == 0 {
		fmt.Fprintln(e.stderr, "syncer: no connections yet, so there is nothing to sync. Add one with "+
			"`syncer connect everreal -name N -subdomain S -username EMAIL`, `syncer connect estateguru -name N` "+
			"or `syncer import ...` (see `syncer help connect`); `syncer demo` shows the whole job first.")
	}
	byName := make(map[string]store.Connection, len(conns))
	known := make([]string, 0, len(conns))
	for _, c := range conns {
		byName[c.Name] = c
		if c.State != store.StateDisconnected {
			known = append(known, c.Name)
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue // named twice: synced once
		}
		seen[n] = true
		c, ok := byName[n]
		switch {
		case !ok && len(known) == 0:
			return nil, usagef("-connection %q: there is no such connection (there are none yet)", n)
		case !ok:
			return nil, usagef("-connection %q: there is no such connection (connections: %s)", n, strings.Join(known, ", "))
		case c.State == store.StateDisconnected:
			return nil, usagef("-connection %q is disconnected: connect it again with `syncer connect %s -name %s ...` to sync it", n, c.Provider, n)
		}
		out = append(out, n)
	}
	return out, nil
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

// watchdog sends WATCHDOG=1 through notify every interval/3 while healthy
// answers within that time, until ctx ends. A hung process stops pinging and
// systemd restarts it.
func watchdog(ctx context.Context, log *slog.Logger, interval time.Duration, healthy func(context.Context) error, notify func(state string)) {
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		checkCtx, cancel := context.WithTimeout(ctx, interval/3)
		err := healthy(checkCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Said once per outage, not every tick.
			if !failing {
				log.Error("watchdog: not pinging systemd", "error", err.Error())
			}
			failing = true
			continue
		}
		if failing {
			log.Info("watchdog: healthy again; pinging systemd")
			failing = false
		}
		notify(daemon.SdNotifyWatchdog)
	}
}
