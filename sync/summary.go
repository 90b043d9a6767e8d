// What a run adds up to: each connection's result, the connections a
// person must act on, and the run's status.

package sync

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/provider"
)

// Result is one connection's outcome in a run.
type Result struct {
	Connection string
	Provider   string
	// Status is store.ResultOK, ResultFailed or ResultSkipped (not
	// attempted: it needs re-login, or the run was interrupted).
	Status string
	// Error is the scrubbed error, or why it was skipped.
	Error       string
	NeedsReauth bool
}

// Attention is a connection a person must act on, as a run saw it.
type Attention struct {
	Connection string
	Provider   string
	// Reauth: it needs re-login (since Since). Otherwise its refresh token
	// dies at RefreshExpiresAt, within the warning window.
	Reauth           bool
	Since            time.Time
	RefreshExpiresAt time.Time
	// Fix is the command that fixes it.
	Fix string
}

// Summary is a run's outcome.
type Summary struct {
	RunID    int64
	Trigger  string
	Started  time.Time
	Finished time.Time
	Status   string
	OK       int
	Failed   int
	// Skipped counts connections not attempted because they need re-login.
	Skipped int
	// RefreshWarned counts connections whose refresh token dies within
	// Syncer.RefreshWarn.
	RefreshWarned int
	// Results has one entry per connection the run attempted or skipped.
	Results []Result
	// Attention lists the connections that need a person, after the run.
	Attention []Attention
	// Interrupted counts connections stopped by a shutdown: neither
	// synced nor failed.
	Interrupted int
	// SkippedElsewhere counts connections left to another instance
	// (Claimer: it holds them, or synced them in this period). They are
	// neither results nor attention: no sync_results row, no effect on
	// Status.
	SkippedElsewhere int
	// NeedsReauth counts connections a person must re-connect, whether they
	// failed in this run or were already waiting.
	NeedsReauth int
}

// NeedsAttention reports whether a person should look: a connection failed
// or waits for a re-connect.
func (s Summary) NeedsAttention() bool {
	return s.Failed > 0 || s.NeedsReauth > 0 || s.RefreshWarned > 0
}

// skip records a connection that waits for re-login as not attempted: the
// provider refused its token. The history shows the gap, with the reason
// and the fix.
func (s *Syncer) skip(ctx context.Context, runID int64, c store.Connection, log *slog.Logger) Result {
	why := "not attempted: needs re-login"
	if !c.StateSince.IsZero() {
		why += " since " + c.StateSince.Format(time.RFC3339)
	}
	if fix := s.fix(c); fix != "" {
		why += "; run `" + fix + "`"
	}
	now := s.now()
	if err := s.Store.RecordResult(context.WithoutCancel(ctx), runID, c.ID, store.ResultSkipped, why, now, now); err != nil {
		log.Error("recording the result failed", "connection", c.Name, "error", err)
	}
	return Result{Connection: c.Name, Provider: c.Provider, Status: store.ResultSkipped, Error: why, NeedsReauth: true}
}

// addSkipped counts a connection not attempted because it needs re-login.
func (sum *Summary) addSkipped(r Result) {
	sum.NeedsReauth++
	sum.Skipped++
	sum.Results = append(sum.Results, r)
}

// add counts a synced connection's outcome: err is what syncConnection
// returned.
func (sum *Summary) add(c store.Connection, err error) {
	r := Result{Connection: c.Name, Provider: c.Provider, Status: store.ResultOK}
	var ie *interruptedError
	switch {
	case err == nil:
		sum.OK++
	case errors.As(err, &ie):
		sum.Interrupted++
		r.Status, r.Error = store.ResultSkipped, err.Error()
	default:
		sum.Failed++
		r.Status, r.Error = store.ResultFailed, err.Error()
		if provider.KindOf(err) == provider.KindReauth {
			sum.NeedsReauth++
			r.NeedsReauth = true
		}
	}
	sum.Results = append(sum.Results, r)
}

// settle sets the run's status from its counts.
func (sum *Summary) settle(interrupted bool) {
	switch {
	case interrupted:
		sum.Status = store.RunInterrupted
	case sum.Failed == 0 && sum.Skipped == 0 && sum.RefreshWarned == 0:
		sum.Status = store.RunOK
	case sum.OK+sum.SkippedElsewhere == 0 && sum.Failed+sum.Skipped > 0:
		// None synced, here or (in this period) by another instance.
		sum.Status = store.RunFailed
	default:
		// Something synced, but not everything is well: a connection
		// failed, needs re-login, or its refresh token dies soon.
		sum.Status = store.RunPartial
	}
}

// finish writes the run's record and logs its outcome. The record is
// written even when ctx was cancelled: an interrupted run must say so, with
// its finished_at.
func (s *Syncer) finish(ctx context.Context, sum *Summary, log *slog.Logger) error {
	ctx = context.WithoutCancel(ctx)
	if err := s.Store.RecordRunAttention(ctx, sum.RunID, sum.Skipped, sum.RefreshWarned); err != nil {
		return err
	}
	if err := s.Store.FinishRun(ctx, sum.RunID, sum.Status, sum.OK, sum.Failed); err != nil {
		return err
	}
	sum.Finished = s.now()
	level := slog.LevelInfo
	if sum.Status != store.RunOK {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "sync finished", "status", sum.Status, "ok", sum.OK, "failed", sum.Failed,
		"needs_reauth", sum.NeedsReauth, "skipped", sum.Skipped, "refresh_expiring", sum.RefreshWarned,
		"skipped_elsewhere", sum.SkippedElsewhere,
		"duration", sum.Finished.Sub(sum.Started).Round(time.Millisecond))
	return nil
}

// attention logs at WARN, after every run, each selected connection that
// needs re-login and each whose refresh token dies within RefreshWarn, with
// the command that fixes it, and lists them in the summary. It reads the
// connections again: the run may have refreshed a token or met a refusal.
func (s *Syncer) attention(ctx context.Context, sum *Summary, selected []store.Connection, log *slog.Logger) {
	conns, err := s.Store.Connections(ctx)
	if err != nil {
		log.Error("reading the connections after the run failed", "error", err)
		conns = selected
	}
	want := make(map[int64]bool, len(selected))
	for _, c := range selected {
		want[c.ID] = true
	}
	now := s.now()
	for _, c := range conns {
		if !want[c.ID] {
			continue
		}
		switch {
		case c.State == store.StateReauthRequired:
			a := Attention{Connection: c.Name, Provider: c.Provider, Reauth: true, Since: c.StateSince, Fix: s.fix(c)}
			sum.Attention = append(sum.Attention, a)
			since := "unknown"
			if !c.StateSince.IsZero() {
				since = c.StateSince.Format(time.RFC3339)
			}
			log.Warn("connection needs re-login; it is not synced until then", "connection", c.Name,
				"provider", c.Provider, "since", since, "fix", a.Fix)
		case c.State == store.StateActive && s.RefreshWarn > 0 && !c.RefreshExpiresAt.IsZero() &&
			c.RefreshExpiresAt.Sub(now) <= s.RefreshWarn:
			a := Attention{Connection: c.Name, Provider: c.Provider, RefreshExpiresAt: c.RefreshExpiresAt, Fix: s.fix(c)}
			sum.Attention = append(sum.Attention, a)
			sum.RefreshWarned++
			log.Warn("refresh token dies soon; re-connect before then", "connection", c.Name, "provider", c.Provider,
				"refresh_expires_at", c.RefreshExpiresAt.Format(time.RFC3339), "fix", a.Fix)
		}
	}
}
