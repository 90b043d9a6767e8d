package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
)

// watcher is the sync.Observer that makes every run visible: metrics (file
// and endpoint), systemd STATUS=, pings, notifications on change. None of
// it can fail a run: its errors are logged.
type watcher struct {
	a        *app
	daemon   bool // send STATUS= to systemd
	pinger   *monitor.Pinger
	notifier *monitor.Notifier
	host     string
}

var _ sync.Observer = (*watcher)(nil)

func (a *app) newWatcher(isDaemon bool) (*watcher, error) {
	w := &watcher{a: a, daemon: isDaemon}
	w.host, _ = os.Hostname()
	if !a.cfg.PingURL.IsZero() {
		w.pinger = &monitor.Pinger{URL: a.cfg.PingURL.Reveal(), Log: a.log,
			Client: &http.Client{Timeout: monitor.PingTimeout}}
	}
	n, err := a.notifier()
	if err != nil {
		return nil, err
	}
	w.notifier = n
	return w, nil
}

// notifier builds the notifier from SYNCER_NOTIFY_URLS and
// SYNCER_NOTIFY_COMMAND (checked by loadConfig).
func (a *app) notifier() (*monitor.Notifier, error) {
	var urls []string
	if !a.cfg.NotifyURLs.IsZero() {
		var err error
		if urls, err = monitor.ParseNotifyURLs(a.cfg.NotifyURLs.Reveal()); err != nil {
			return nil, fmt.Errorf("%w: SYNCER_NOTIFY_URLS: %v", errConfig, err)
		}
	}
	return monitor.NewNotifier(urls, a.cfg.NotifyCommand, a.cfg.NotifyTimeout, a.log)
}

func (w *watcher) RunStarted(ctx context.Context, runID int64, trigger string) {
	w.pinger.Start(ctx, fmt.Sprintf("syncer run %d (%s) started on %s\n", runID, trigger, w.host))
}

func (w *watcher) RunFinished(ctx context.Context, sum sync.Summary) {
	ctx = context.WithoutCancel(ctx)
	line := statusLine(sum)
	w.refreshMetrics(ctx, &sum)
	if w.daemon {
		_, _ = daemon.SdNotify(false, "STATUS="+line)
	}
	w.pinger.Finish(ctx, sum.Status == store.RunOK, pingBody(sum, line))
	if w.notifier.Enabled() && sum.Status != store.RunInterrupted {
		w.notify(ctx)
	}
}

// statusLine is the run in one line, for systemctl status and pings:
// "last run 12:00Z: 3 ok, 1 needs re-login: acme".
func statusLine(sum sync.Summary) string {
	parts := []string{fmt.Sprintf("%d ok", sum.OK)}
	if n := sum.Failed - countReauth(sum); n > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", n))
	}
	var reauth, expiring []string
	for _, a := range sum.Attention {
		if a.Reauth {
			reauth = append(reauth, a.Connection)
		} else {
			expiring = append(expiring, a.Connection)
		}
	}
	if len(reauth) > 0 {
		parts = append(parts, fmt.Sprintf("%d needs re-login: %s", len(reauth), strings.Join(reauth, ", ")))
	}
	if len(expiring) > 0 {
		parts = append(parts, fmt.Sprintf("%d login expiring: %s", len(expiring), strings.Join(expiring, ", ")))
	}
	if sum.Interrupted > 0 {
		parts = append(parts, fmt.Sprintf("%d interrupted", sum.Interrupted))
	}
	if sum.SkippedElsewhere > 0 { // PostgreSQL: another instance's turn
		parts = append(parts, fmt.Sprintf("%d left to other instances", sum.SkippedElsewhere))
	}
	return fmt.Sprintf("last run %s: %s", sum.Finished.UTC().Format("15:04Z"), strings.Join(parts, ", "))
}

// countReauth counts the results that failed with a refusal (and so are
// listed among those needing re-login).
func countReauth(sum sync.Summary) int {
	n := 0
	for _, r := range sum.Results {
		if r.Status == store.ResultFailed && r.NeedsReauth {
			n++
		}
	}
	return n
}

func pingBody(sum sync.Summary, line string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "syncer run %d: %s\n%s\n", sum.RunID, sum.Status, line)
	for _, r := range sum.Results {
		if r.Status == store.ResultFailed {
			fmt.Fprintf(&b, "failed: %s\n", r.Connection)
		}
	}
	for _, a := range sum.Attention {
		fmt.Fprintf(&b, "attention: %s: %s\n", a.Connection, a.Fix)
	}
	return b.String()
}

// refreshMetrics sets the metrics from the store after a run and writes
// the metrics file.
func (w *watcher) refreshMetrics(ctx context.Context, sum *sync.Summary) {
	a := w.a
	if err := a.loadConnectionMetrics(ctx); err != nil {
		a.log.Error("reading connections for the metrics failed", "error", err)
	}
	results := make([]monitor.SyncResult, 0, len(sum.Results))
	for _, r := range sum.Results {
		results = append(results, monitor.SyncResult{Provider: r.Provider, Result: r.Status})
	}
	a.metrics.RunFinished(monitor.Run{Finished: sum.Finished, Duration: sum.Finished.Sub(sum.Started),
		OK: sum.Status == store.RunOK, Results: results, RowsWritten: a.store.RowsWritten()})
	a.writeMetricsFile()
}

// loadConnectionMetrics sets the per-connection gauges from the store.
func (a *app) loadConnectionMetrics(ctx context.Context) error {
	conns, err := a.store.Connections(ctx)
	if err != nil {
		return err
	}
	failures, err := a.store.ConsecutiveFailures(ctx)
	if err != nil {
		return err
	}
	var out []monitor.Connection
	for _, c := range conns {
		if c.State == store.StateDisconnected {
			continue
		}
		out = append(out, monitor.Connection{
			Name: c.Name, Provider: c.Provider,
			Up:                  c.State == store.StateActive && failures[c.ID] == 0 && !c.LastSuccessAt.IsZero(),
			NeedsReauth:         c.State == store.StateReauthRequired,
			LastSuccess:         c.LastSuccessAt,
			RefreshExpiry:       c.RefreshExpiresAt,
			ConsecutiveFailures: failures[c.ID],
		})
	}
	a.metrics.SetConnections(out)
	return nil
}

func (a *app) writeMetricsFile() {
	if a.cfg.MetricsFile == "" {
		return
	}
	if err := a.metrics.WriteFile(a.cfg.MetricsFile); err != nil {
		a.log.Error("writing the metrics file failed; it is written again after the next run", "error", err)
	}
}

// notify announces each connection's changes once: what was announced is
// remembered in snapshots.db (notify_state), so a restart does not repeat
// it, and what could not be delivered is tried again after the next run.
func (w *watcher) notify(ctx context.Context) {
	a := w.a
	conns, err := a.store.Connections(ctx)
	if err != nil {
		a.log.Error("notifications: reading connections failed", "error", err)
		return
	}
	failures, err := a.store.ConsecutiveFailures(ctx)
	if err != nil {
		a.log.Error("notifications: reading failures failed", "error", err)
		return
	}
	states, err := a.store.NotifyStates(ctx)
	if err != nil {
		a.log.Error("notifications: reading what was announced failed", "error", err)
		return
	}
	now := time.Now().UTC()
	secrets := a.cfg.secrets()
	for _, c := range conns {
		prev, ok := states[c.ID]
		if !ok {
			prev = store.NotifyState{Condition: store.ConditionOK}
		}
		cs := monitor.ConnState{
			Name: c.Name, Provider: c.Provider, State: c.State,
			LastError: provider.ScrubText(c.LastError, secrets...), Fix: reconnectCommand(c),
			Failures: failures[c.ID], RefreshExpiry: c.RefreshExpiresAt,
			RefreshWarn: !c.RefreshExpiresAt.IsZero() && c.RefreshExpiresAt.Sub(now) <= a.cfg.RefreshWarn,
		}
		changes := monitor.Changes(cs, monitor.Announced{Condition: prev.Condition, RefreshWarnedFor: prev.RefreshWarnedFor},
			a.cfg.NotifyAfter, now, w.host)
		next := prev
		for _, ch := range changes {
			if err := w.notifier.Send(ctx, ch.Event); err != nil {
				continue // logged by Send; due again after the next run
			}
			a.log.Info("notification sent", "event", ch.Event.Event, "connection", c.Name)
			if ch.Event.Event == monitor.EventRefreshExpiring {
				next.RefreshWarnedFor = ch.Next.RefreshWarnedFor
			} else {
				next.Condition = ch.Next.Condition
			}
		}
		if next != prev || !ok && len(changes) > 0 {
			if err := a.store.SetNotifyState(ctx, c.ID, next); err != nil {
				a.log.Error("notifications: recording what was announced failed; it may be announced again", "error", err)
			}
		}
	}
}
