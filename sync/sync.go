// Package sync runs syncs: for each connection, make sure its token is fresh,
// fetch its data, hand the result to the store. It also holds the scheduler.
//
// It talks to the store through the Store interface below and to each
// provider through Provider (providers.go), whose adapters for EverReal and
// EstateGuru are here too; cmd/syncer wires the real ones. One connection's
// sync reads top to bottom in syncConnection: lock, token (tokenSource,
// token.go), fetch, save, record; slots.go bounds how many run at once, and
// hostqueue.go takes them a queue per provider host, side by side.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	stdsync "sync"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// Store is what a sync needs of the store.
type Store interface {
	Connections(ctx context.Context) ([]store.Connection, error)
	Token(ctx context.Context, connID int64) (store.StoredToken, error)
	SaveToken(ctx context.Context, connID int64, tok provider.Token) error
	// CheckWritable fails when tokens.db cannot take a durable write now.
	CheckWritable(ctx context.Context) error
	LockConnection(ctx context.Context, connID int64, wait time.Duration) (unlock func(), err error)
	SetState(ctx context.Context, connID int64, state, lastError string) error
	SaveEverReal(ctx context.Context, connID int64, period, fetchedAt time.Time, snap store.EverRealSnapshot) error
	SaveEstateGuru(ctx context.Context, connID int64, period, fetchedAt time.Time, snap store.EstateGuruSnapshot) error
	StartRun(ctx context.Context, trigger string) (int64, error)
	RecordResult(ctx context.Context, runID, connID int64, status, errText string, started, finished time.Time) error
	FinishRun(ctx context.Context, runID int64, status string, ok, failed int) error
	// RecordRunAttention records the run's connections not attempted
	// (they need re-login) and those whose refresh token dies soon.
	RecordRunAttention(ctx context.Context, runID int64, skipped, warned int) error
}

var _ Store = (*store.Store)(nil)

// --- several instances (issue 16) ---

// Claimer is implemented by a store that several syncer instances share
// (PostgreSQL). A sync then claims a connection's turn instead of taking
// LockConnection: a claim is refused at once, with an error wrapping
// ErrSkip, when another instance holds the connection or has already
// synced it in this snapshot period, so instances split the work instead
// of waiting for each other and repeating it.
type Claimer interface {
	// anew: the connection was named (-connection): sync it even if
	// another instance did in this period, once its turn is free.
	ClaimConnection(ctx context.Context, connID int64, period time.Time, anew bool) (Claim, error)
}

// Claim is one connection's turn, held until Release.
type Claim interface {
	// Valid fails when the claim may lapse before a token grant could
	// finish (it was lost, or renewing it failed): no refresh then, since
	// another instance may be about to present the same refresh token.
	Valid(ctx context.Context) error
	// Release ends the turn; synced records that the connection was synced
	// in the claimed period.
	Release(synced bool)
}

// ErrSkip, wrapped by a Claimer's error, means the connection is another
// instance's: it is neither synced nor failed, and nothing is recorded.
var ErrSkip = errors.New("skipped")

// --- end several instances ---

// Run triggers, as recorded in sync_runs.
const (
	TriggerSchedule = "schedule"
	TriggerOnce     = "once"
	TriggerDemo     = "demo"
)

// Syncer runs syncs. Set the fields, then call Run.
type Syncer struct {
	Store Store
	// Providers makes each connection's Provider, by provider name.
	Providers Providers
	Log       *slog.Logger

	// Concurrency is how many connections sync at once (default 4).
	Concurrency int
	// Period is the snapshot period: a run in the same period replaces that
	// period's snapshot (default 24h).
	Period time.Duration
	// LockWait bounds how long a connection waits for another process
	// syncing it (default 2m).
	LockWait time.Duration
	// RefreshMargin: an access token expiring within it is refreshed before
	// use (default 2m), so it does not die mid-call.
	RefreshMargin time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterRun, if set, is called at the end of every Run whose record was
	// written, with the run's summary and Run's context (check ctx.Err():
	// an interrupted run calls it too): housekeeping such as retention and
	// WAL checkpoints. It cannot fail the run; it logs its own errors.
	AfterRun func(ctx context.Context, sum Summary)
	// Explain, if set, adds to a connection's error what a person can do
	// about it, in the words of the interface they use (cmd/syncer names
	// its commands and variables), before the error is logged and
	// recorded. This package words none.
	Explain func(err error) error
	// Reconnect, if set, is the command that brings a connection back
	// once its provider refused the stored login, in the interface's
	// words: recorded with its skipped rows and given as Attention.Fix.
	Reconnect func(c store.Connection) string
	// RefreshWarn: a connection whose refresh token dies within it is
	// logged at WARN after every run and makes the run partial (0: never).
	RefreshWarn time.Duration
	// Observer, if set, hears of every run's start and end (after
	// AfterRun): metrics, pings, notifications.
	Observer Observer

	// kept holds refreshed tokens whose save failed, for the next run.
	kept keptTokens
}

// Observer hears what runs do. Its methods are called on the run's
// goroutine and must return soon; they cannot fail the run.
type Observer interface {
	RunStarted(ctx context.Context, runID int64, trigger string)
	RunFinished(ctx context.Context, sum Summary)
}

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

// ErrNoConnection is returned when a -connection name matches nothing.
var ErrNoConnection = errors.New("no such connection")

// Run syncs every active connection (or only those named), records the run
// and returns its summary. One connection's failure never stops the others.
// When ctx is cancelled, in-flight calls stop, nothing half-written stays,
// and the run is recorded as interrupted.
func (s *Syncer) Run(ctx context.Context, trigger string, only []string) (sum Summary, err error) {
	conns, err := s.Store.Connections(ctx)
	if err != nil {
		return sum, err
	}
	selected, err := selectConnections(conns, only)
	if err != nil {
		return sum, err
	}
	runID, err := s.Store.StartRun(ctx, trigger)
	if err != nil {
		return sum, err
	}
	sum.RunID = runID
	sum.Trigger = trigger
	log := s.logger().With("run_id", runID, "trigger", trigger)
	log.Info("sync started", "connections", len(selected))
	sum.Started = s.now()
	if s.Observer != nil {
		s.Observer.RunStarted(ctx, runID, trigger)
	}

	// A panic outside a connection's own recovery still closes the run, so
	// it never looks like it is going on; the scheduler's Recover logs it.
	defer func() {
		if p := recover(); p != nil {
			_ = s.Store.FinishRun(context.WithoutCancel(ctx), runID, store.RunFailed, sum.OK, sum.Failed)
			panic(p)
		}
	}()

	var (
		mu    stdsync.Mutex
		wg    stdsync.WaitGroup
		slots = newSlots(s.concurrency())
		done  = ctx.Done()
	)
	// Work ordering (hostqueue.go): a queue per provider host, served side
	// by side, so one slow or rate-limited host never leaves others idle.
	var active []store.Connection
	for _, c := range selected {
		if c.State == store.StateReauthRequired {
			r := s.skip(ctx, runID, c, log)
			mu.Lock()
			sum.addSkipped(r)
			mu.Unlock()
			continue
		}
		if c.State == store.StateActive {
			active = append(active, c)
		}
	}
	queues := newHostQueues(active)
loop:
	for {
		select {
		case slots.network <- struct{}{}:
		case <-done:
			break loop
		}
		c, hostDone, ok := queues.take()
		if !ok {
			<-slots.network
			break
		}
		wg.Add(1)
		go func(c store.Connection) {
			defer wg.Done()
			turn := slots.turn()
			turn.leaveHost = hostDone // before the slot is given back: the next pick counts it
			defer turn.end()
			err := s.syncConnection(ctx, runID, c, log, turn, len(only) > 0)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrSkip) {
				// Another instance's turn: not this run's result.
				sum.SkippedElsewhere++
				return
			}
			sum.add(c, err)
		}(c)
	}
	wg.Wait()

	s.attention(context.WithoutCancel(ctx), &sum, selected, log)
	sum.settle(ctx.Err() != nil)
	if err := s.finish(ctx, &sum, log); err != nil {
		return sum, err
	}
	if s.AfterRun != nil {
		s.AfterRun(ctx, sum)
	}
	if s.Observer != nil {
		s.Observer.RunFinished(ctx, sum)
	}
	return sum, nil
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

func selectConnections(conns []store.Connection, only []string) ([]store.Connection, error) {
	if len(only) == 0 {
		return conns, nil
	}
	byName := make(map[string]store.Connection, len(conns))
	for _, c := range conns {
		byName[c.Name] = c
	}
	var out []store.Connection
	for _, name := range only {
		c, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrNoConnection, name)
		}
		out = append(out, c)
	}
	return out, nil
}

// syncConnection syncs one connection and records its result: lock (or
// claim), token, fetch, save, record. named: the connection was asked for
// by name. It returns the connection's error, scrubbed of secrets, or nil.
func (s *Syncer) syncConnection(ctx context.Context, runID int64, c store.Connection, runLog *slog.Logger, turn *turn, named bool) (err error) {
	log := runLog.With("connection", c.Name, "provider", c.Provider)
	ctx = provider.WithConnection(ctx, c.Name) // retry log lines name it
	// Waiting out a host's rate limit, it gives its slot to another host's
	// work (slots.go).
	ctx = provider.WithWaitHook(ctx, func() func() error { return turn.stepAside(ctx) })
	started := s.now()
	var tokens *tokenSource
	unlock := func() {}
	defer func() {
		if p := recover(); p != nil {
			// A panic's value may quote a token: scrubbed like any error.
			var secrets []string
			if tokens != nil {
				secrets = tokens.Secrets()
			}
			msg := provider.ScrubText(fmt.Sprint(p), secrets...)
			log.Error("internal error while syncing", "panic", msg, "stack", string(debug.Stack()))
			err = errors.New("internal error: " + msg)
		}
		if errors.Is(err, ErrSkip) {
			// Another instance's turn: nothing held, nothing to record.
			log.Debug("connection left to another instance", "reason", err.Error())
			return
		}
		// Whatever happened, the message stored and logged holds no token.
		if err != nil && tokens != nil {
			err = scrubbed(err, tokens.Secrets())
		}
		if err != nil && s.Explain != nil {
			err = s.Explain(err)
		}
		if ctx.Err() != nil && err != nil {
			err = &interruptedError{err}
		}
		// Recorded under the lock: a re-connect waiting for it must not
		// have its fresh state overwritten by this run's outcome.
		s.record(ctx, runID, c, started, err, log)
		unlock()
	}()

	var claim Claim
	if cl, ok := s.Store.(Claimer); ok {
		claimed, cerr := cl.ClaimConnection(ctx, c.ID, store.PeriodStart(started, s.period()), named)
		if cerr != nil {
			return cerr
		}
		claim = claimed
		// err is the connection's outcome by the time unlock runs.
		unlock = func() { claimed.Release(err == nil) }
	} else {
		u, err := s.Store.LockConnection(ctx, c.ID, s.lockWait())
		if err != nil {
			return err
		}
		unlock = u
	}
	// A provider without credentials fails after the token lookup: a
	// connection with no tokens says that first.
	p, perr := s.provider(c)
	tokens, err = s.newTokenSource(ctx, c, p, log)
	if tokens != nil && claim != nil {
		// No refresh once the claim may lapse: another instance may be
		// about to present the same refresh token.
		tokens.mayRefresh = claim.Valid
	}
	if errors.Is(err, store.ErrNoToken) {
		return fmt.Errorf("%s: %w for this connection", c.Provider, err)
	}
	if err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	err = s.fetchAndSave(ctx, c, p, tokens, turn, log)
	if provider.KindOf(err) == provider.KindInvalidToken {
		// The access token died early (revoked, or the clock is off), or
		// expired during retries: one refresh, one retry.
		if retry, expired := tokens.Invalidate(); retry {
			log.Info("access token refused; refreshing and retrying once", "expired", expired)
			if err := turn.toNetwork(ctx); err != nil {
				return err
			}
			err = s.fetchAndSave(ctx, c, p, tokens, turn, log)
		}
	}
	return err
}

// fetchAndSave fetches the connection's data with a fresh access token and
// stores it, holding a save slot for the store's writer.
func (s *Syncer) fetchAndSave(ctx context.Context, c store.Connection, p Provider, tokens *tokenSource, turn *turn, log *slog.Logger) error {
	access, err := tokens.Token(ctx)
	if err != nil {
		return err
	}
	fetchedAt := s.now()
	snap, err := p.Fetch(ctx, access)
	if err != nil {
		return err
	}
	if err := turn.toSave(ctx); err != nil {
		return err
	}
	// An answer may turn out to be an error answer only while it is
	// decoded, which can happen here, as it is stored.
	return snap.Save(ctx, SaveTo{
		Store: s.Store, ConnID: c.ID, Period: store.PeriodStart(fetchedAt, s.period()), FetchedAt: fetchedAt,
		// A raw answer is stored as received, but for this connection's
		// secrets: a provider that echoes the access token must not put it
		// into snapshots.db, which the reporting group reads.
		CleanRaw: func(raw []byte) []byte {
			clean, n := provider.ScrubBytes(raw, tokens.Secrets()...)
			if n > 0 {
				log.Warn("the provider's answer holds this connection's secrets; they are stored as [REDACTED]", "count", n)
			}
			return clean
		},
	})
}

// checkBaseURL refuses a connection whose base URL in snapshots.db breaks
// the URL rule or differs from the one tokens.db holds beside its tokens.
// Nothing is sent then; the state stays as it is, so putting the URL back
// is enough, and a meant change is a re-connect.
func checkBaseURL(c store.Connection, vaultURL string) error {
	if err := provider.CheckBaseURL(c.BaseURL); err != nil {
		return &BaseURLError{Connection: c, Problem: BaseURLBroken,
			Err: fmt.Errorf("the base URL in snapshots.db breaks the URL rule: %v", err)}
	}
	if vaultURL == "" {
		return &BaseURLError{Connection: c, Problem: BaseURLUnbound,
			Err: errors.New("tokens.db does not say which URL these tokens belong to")}
	}
	if c.BaseURL != vaultURL {
		return &BaseURLError{Connection: c, Problem: BaseURLMoved,
			Err: fmt.Errorf("the base URL in snapshots.db (%q) is not the one the tokens were issued by (%q, in tokens.db)", c.BaseURL, vaultURL)}
	}
	return nil
}

// BaseURLProblem is why a connection's base URL was refused.
type BaseURLProblem int

const (
	BaseURLBroken  BaseURLProblem = iota + 1 // it breaks the URL rule
	BaseURLUnbound                           // tokens.db does not bind the tokens to a URL
	BaseURLMoved                             // it is not the URL tokens.db binds the tokens to
)

// BaseURLError is a connection refused before anything was sent, for its
// base URL.
type BaseURLError struct {
	Connection store.Connection
	Problem    BaseURLProblem
	Err        error
}

func (e *BaseURLError) Error() string {
	return e.Connection.Provider + ": refusing to sync: " + e.Err.Error() + "; nothing was sent"
}

func (e *BaseURLError) Unwrap() error { return e.Err }

// provider is the connection's Provider, for its base URL.
func (s *Syncer) provider(c store.Connection) (Provider, error) {
	newProvider, ok := s.Providers[c.Provider]
	if !ok {
		switch c.Provider {
		case everreal.Name, estateguru.Name:
			return nil, &NotConfiguredError{Provider: c.Provider}
		}
		return nil, fmt.Errorf("unknown provider %q", c.Provider)
	}
	return newProvider(c.BaseURL), nil
}

// NotConfiguredError is a connection's error when its provider is known but
// not registered in Providers (no client credentials are configured).
type NotConfiguredError struct{ Provider string }

func (e *NotConfiguredError) Error() string { return e.Provider + ": not configured" }

// record writes the connection's result and state. It uses a context that
// outlives cancellation, so an interrupted connection is still recorded.
func (s *Syncer) record(ctx context.Context, runID int64, c store.Connection, started time.Time, err error, log *slog.Logger) {
	ctx = context.WithoutCancel(ctx)
	finished := s.now()
	if err == nil {
		log.Info("connection synced", "duration", finished.Sub(started).Round(time.Millisecond))
		if rerr := s.Store.RecordResult(ctx, runID, c.ID, store.ResultOK, "", started, finished); rerr != nil {
			log.Error("recording the result failed", "error", rerr)
		}
		return
	}
	var ie *interruptedError
	if errors.As(err, &ie) {
		// Stopped by a shutdown, not failed: the connection's state and
		// last error stay as they were.
		log.Info("connection interrupted", "error", ie.err.Error())
		if rerr := s.Store.RecordResult(ctx, runID, c.ID, store.ResultSkipped, "interrupted: "+ie.err.Error(), started, finished); rerr != nil {
			log.Error("recording the result failed", "error", rerr)
		}
		return
	}
	state := store.StateActive
	if provider.KindOf(err) == provider.KindReauth {
		// Never ask the provider again with a refused token: only a
		// re-connect brings the connection back.
		state = store.StateReauthRequired
	}
	log.Error("connection failed", "error", err.Error(), "state", state)
	if serr := s.Store.SetState(ctx, c.ID, state, err.Error()); serr != nil {
		log.Error("recording the connection's state failed", "error", serr)
	}
	if rerr := s.Store.RecordResult(ctx, runID, c.ID, store.ResultFailed, err.Error(), started, finished); rerr != nil {
		log.Error("recording the result failed", "error", rerr)
	}
}

// interruptedError marks a connection stopped by the run's cancellation.
type interruptedError struct{ err error }

func (e *interruptedError) Error() string { return "interrupted: " + e.err.Error() }
func (e *interruptedError) Unwrap() error { return e.err }

// scrubbed replaces any secret value in err's text: the backstop behind the
// providers' own care never to quote one.
func scrubbed(err error, secrets []string) error {
	msg := err.Error()
	clean := provider.ScrubText(msg, secrets...)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// fix is the command that brings c back, or "".
func (s *Syncer) fix(c store.Connection) string {
	if s.Reconnect == nil {
		return ""
	}
	return s.Reconnect(c)
}

func (s *Syncer) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Syncer) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (s *Syncer) concurrency() int {
	if s.Concurrency <= 0 {
		return 4
	}
	return s.Concurrency
}

func (s *Syncer) period() time.Duration {
	if s.Period <= 0 {
		return 24 * time.Hour
	}
	return s.Period
}

func (s *Syncer) lockWait() time.Duration {
	if s.LockWait <= 0 {
		return 2 * time.Minute
	}
	return s.LockWait
}

func (s *Syncer) refreshMargin() time.Duration {
	if s.RefreshMargin <= 0 {
		return 2 * time.Minute
	}
	return s.RefreshMargin
}
