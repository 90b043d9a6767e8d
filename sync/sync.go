// Package sync runs syncs: for each connection, make sure its token is fresh,
// fetch its data, hand the result to the store. It also holds the scheduler.
//
// It talks to the providers and the store through the small interfaces
// below; cmd/syncer wires the real ones.
package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"runtime/debug"
	stdsync "sync"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// EverReal is what a sync needs of an EverReal client bound to one base URL.
type EverReal interface {
	Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error)
	Me(ctx context.Context, access provider.Secret) (*everreal.User, error)
}

// EstateGuru is what a sync needs of an EstateGuru client bound to one base URL.
type EstateGuru interface {
	Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error)
	FetchInvestments(ctx context.Context, access provider.Secret) (*estateguru.Answer, error)
}

var (
	_ EverReal   = (*everreal.Client)(nil)
	_ EstateGuru = (*estateguru.Client)(nil)
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

// Clients makes a provider client for a connection's base URL.
type Clients struct {
	EverReal   func(baseURL string) EverReal
	EstateGuru func(baseURL string) EstateGuru
}

// Run triggers, as recorded in sync_runs.
const (
	TriggerSchedule = "schedule"
	TriggerOnce     = "once"
	TriggerDemo     = "demo"
)

// Syncer runs syncs. Set the fields, then call Run.
type Syncer struct {
	Store   Store
	Clients Clients
	Log     *slog.Logger

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
	// RefreshWarn: a connection whose refresh token dies within it is
	// logged at WARN after every run and makes the run partial (0: never).
	RefreshWarn time.Duration
	// Observer, if set, hears of every run's start and end (after
	// AfterRun): metrics, pings, notifications.
	Observer Observer

	// unsaved holds refreshed tokens whose save failed (the disk filled
	// between the write check and the save, say), by connection. The
	// provider may have rotated the refresh token, making the stored one
	// dead, so this is the only good one: this process's next run saves it
	// before anything else.
	unsaved   map[int64]unsavedToken
	unsavedMu stdsync.Mutex
}

type unsavedToken struct {
	tok provider.Token
	// replaces is the refresh token it was refreshed from. Only while that
	// one is still the stored one is it saved: anything else stored since
	// (a re-connect, or this very token, if only a later step of the save
	// failed) is at least as new and wins.
	replaces provider.Secret
}

func (s *Syncer) keepUnsaved(connID int64, u unsavedToken) {
	s.unsavedMu.Lock()
	defer s.unsavedMu.Unlock()
	if s.unsaved == nil {
		s.unsaved = make(map[int64]unsavedToken)
	}
	s.unsaved[connID] = u
}

func (s *Syncer) takeUnsaved(connID int64) (unsavedToken, bool) {
	s.unsavedMu.Lock()
	defer s.unsavedMu.Unlock()
	u, ok := s.unsaved[connID]
	delete(s.unsaved, connID)
	return u, ok
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

// ReconnectCommand is the command that brings a connection back after its
// provider refused the stored login.
func ReconnectCommand(c store.Connection) string {
	switch c.Provider {
	case everreal.Name:
		return fmt.Sprintf("syncer connect everreal -name %s -url %s -username EMAIL", c.Name, c.BaseURL)
	case estateguru.Name:
		return fmt.Sprintf("syncer connect estateguru -name %s -url %s", c.Name, c.BaseURL)
	}
	return fmt.Sprintf("syncer connect %s -name %s", c.Provider, c.Name)
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
	started := s.now()
	sum.Started = started
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
loop:
	for _, c := range selected {
		if c.State == store.StateReauthRequired {
			// Not attempted: the provider refused its token. The history
			// shows the gap, with the reason and the fix.
			sum.NeedsReauth++
			sum.Skipped++
			why := "not attempted: needs re-login"
			if !c.StateSince.IsZero() {
				why += " since " + c.StateSince.Format(time.RFC3339)
			}
			why += "; run `" + ReconnectCommand(c) + "`"
			now := s.now()
			if err := s.Store.RecordResult(context.WithoutCancel(ctx), runID, c.ID, store.ResultSkipped, why, now, now); err != nil {
				log.Error("recording the result failed", "connection", c.Name, "error", err)
			}
			mu.Lock()
			sum.Results = append(sum.Results, Result{Connection: c.Name, Provider: c.Provider,
				Status: store.ResultSkipped, Error: why, NeedsReauth: true})
			mu.Unlock()
			continue
		}
		if c.State != store.StateActive {
			continue
		}
		select {
		case slots.network <- struct{}{}:
		case <-done:
			break loop
		}
		wg.Add(1)
		go func(c store.Connection) {
			defer wg.Done()
			turn := slots.turn()
			defer turn.end()
			res := s.syncConnection(ctx, runID, c, log, turn, len(only) > 0)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(res, ErrSkip) {
				// Another instance's turn: not this run's result.
				sum.SkippedElsewhere++
				return
			}
			r := Result{Connection: c.Name, Provider: c.Provider, Status: store.ResultOK}
			var ie *interruptedError
			switch {
			case res == nil:
				sum.OK++
			case errors.As(res, &ie):
				sum.Interrupted++
				r.Status, r.Error = store.ResultSkipped, res.Error()
			default:
				sum.Failed++
				r.Status, r.Error = store.ResultFailed, res.Error()
				if provider.KindOf(res) == provider.KindReauth {
					sum.NeedsReauth++
					r.NeedsReauth = true
				}
			}
			sum.Results = append(sum.Results, r)
		}(c)
	}
	wg.Wait()

	s.attention(context.WithoutCancel(ctx), &sum, selected, log)
	switch {
	case ctx.Err() != nil:
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
	// The run's record is written even when ctx was cancelled: an
	// interrupted run must say so, with its finished_at.
	if err := s.Store.RecordRunAttention(context.WithoutCancel(ctx), runID, sum.Skipped, sum.RefreshWarned); err != nil {
		return sum, err
	}
	if err := s.Store.FinishRun(context.WithoutCancel(ctx), runID, sum.Status, sum.OK, sum.Failed); err != nil {
		return sum, err
	}
	sum.Finished = s.now()
	level := slog.LevelInfo
	if sum.Status != store.RunOK {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "sync finished", "status", sum.Status, "ok", sum.OK, "failed", sum.Failed,
		"needs_reauth", sum.NeedsReauth, "skipped", sum.Skipped, "refresh_expiring", sum.RefreshWarned,
		"skipped_elsewhere", sum.SkippedElsewhere,
		"duration", sum.Finished.Sub(started).Round(time.Millisecond))
	if s.AfterRun != nil {
		s.AfterRun(ctx, sum)
	}
	if s.Observer != nil {
		s.Observer.RunFinished(ctx, sum)
	}
	return sum, nil
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
			a := Attention{Connection: c.Name, Provider: c.Provider, Reauth: true, Since: c.StateSince, Fix: ReconnectCommand(c)}
			sum.Attention = append(sum.Attention, a)
			since := "unknown"
			if !c.StateSince.IsZero() {
				since = c.StateSince.Format(time.RFC3339)
			}
			log.Warn("connection needs re-login; it is not synced until then", "connection", c.Name,
				"provider", c.Provider, "since", since, "fix", a.Fix)
		case c.State == store.StateActive && s.RefreshWarn > 0 && !c.RefreshExpiresAt.IsZero() &&
			c.RefreshExpiresAt.Sub(now) <= s.RefreshWarn:
			a := Attention{Connection: c.Name, Provider: c.Provider, RefreshExpiresAt: c.RefreshExpiresAt, Fix: ReconnectCommand(c)}
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
			return nil, fmt.Errorf("%w %q (see `syncer status`)", ErrNoConnection, name)
		}
		out = append(out, c)
	}
	return out, nil
}

// syncConnection syncs one connection and records its result. It returns
// the connection's error, scrubbed of secrets, or nil.
func (s *Syncer) syncConnection(ctx context.Context, runID int64, c store.Connection, runLog *slog.Logger, turn *turn, named bool) (err error) {
	log := runLog.With("connection", c.Name, "provider", c.Provider)
	ctx = provider.WithConnection(ctx, c.Name) // retry log lines name it
	started := s.now()
	var secrets []string
	unlock := func() {}
	defer func() {
		if p := recover(); p != nil {
			// A panic's value may quote a token: scrubbed like any error.
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
		if err != nil {
			err = scrubbed(err, secrets)
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

	stored, err := s.Store.Token(ctx, c.ID)
	if errors.Is(err, store.ErrNoToken) {
		return fmt.Errorf("%s: no tokens stored for this connection; run `syncer connect` or `syncer import` for it", c.Provider)
	}
	if err != nil {
		return err
	}
	// Tokens go only where they were issued: never to a URL that someone
	// who can write snapshots.db put there.
	if err := checkBaseURL(c, stored.BaseURL); err != nil {
		return err
	}
	if u, ok := s.takeUnsaved(c.ID); ok && u.replaces == stored.Token.Refresh {
		secrets = append(secrets, u.tok.Secrets()...)
		if err := s.Store.SaveToken(context.WithoutCancel(ctx), c.ID, u.tok); err != nil {
			s.keepUnsaved(c.ID, u)
			return fmt.Errorf("the token refreshed in an earlier run still cannot be saved (it stays in memory): %w", err)
		}
		log.Info("saved the token refreshed in an earlier run")
		stored.Token = u.tok
	}
	tok := stored.Token
	secrets = append(secrets, tok.Secrets()...)

	conn, err := s.bind(c)
	if err != nil {
		return err
	}
	refresh := func() error {
		if claim != nil {
			if err := claim.Valid(ctx); err != nil {
				return err
			}
		}
		// A refresh may rotate the token: never ask for one that could
		// not be saved.
		if err := s.Store.CheckWritable(ctx); err != nil {
			return fmt.Errorf("not refreshing, a new token could not be saved: %w", err)
		}
		// A grant once sent is seen through a shutdown (for a few seconds):
		// EstateGuru rotates on every refresh, so abandoning the answer
		// would lose the only valid refresh token.
		grantCtx, cancel := withGrace(ctx, grantGrace)
		defer cancel()
		fresh, err := conn.refresh(grantCtx, tok.Refresh)
		if err != nil {
			return err
		}
		secrets = append(secrets, fresh.Secrets()...)
		// Durable before use: if the provider rotated the refresh token,
		// the old one is dead, and a crash now must not lose the new one.
		if err := s.Store.SaveToken(context.WithoutCancel(ctx), c.ID, fresh); err != nil {
			s.keepUnsaved(c.ID, unsavedToken{tok: fresh, replaces: tok.Refresh})
			return fmt.Errorf("saving the refreshed token: %w (it is kept in memory and saved by this process's next run; if syncer stops before that, the connection may need `syncer connect` again)", err)
		}
		tok = fresh
		log.Debug("token refreshed", "access_expires_at", fresh.AccessExpiresAt, "refresh_expires_at", fresh.RefreshExpiresAt)
		return nil
	}

	refreshed := false
	if tok.Access.IsZero() || tok.AccessExpiresAt.IsZero() || !tok.AccessExpiresAt.After(s.now().Add(s.refreshMargin())) {
		if err := refresh(); err != nil {
			return err
		}
		refreshed = true
	}
	// A raw answer is stored as received, but for this call's secrets: a
	// provider that echoes the access token must not put it into
	// snapshots.db, which the reporting group reads.
	scrubRaw := func(raw []byte) []byte {
		clean, n := provider.ScrubBytes(raw, secrets...)
		if n > 0 {
			log.Warn("the provider's answer holds this connection's secrets; they are stored as [REDACTED]", "count", n)
		}
		return clean
	}
	fetchAndSave := func() error {
		fetchedAt := s.now()
		save, err := conn.fetch(ctx, tok.Access, scrubRaw)
		if err != nil {
			return err
		}
		if err := turn.toSave(ctx); err != nil {
			return err
		}
		// An answer may turn out to be an error answer only while it is
		// decoded, which can happen here, as it is stored.
		return save(ctx, s.Store, c.ID, store.PeriodStart(fetchedAt, s.period()), fetchedAt)
	}
	err = fetchAndSave()
	// A data call retried after 5xx answers can outlive a short-lived
	// access token refreshed at the start of this run: its own expiry
	// having passed, one more refresh is due.
	expired := !tok.AccessExpiresAt.IsZero() && !s.now().Before(tok.AccessExpiresAt)
	if provider.KindOf(err) == provider.KindInvalidToken && (!refreshed || expired) {
		// The access token died early (revoked, or the clock is off), or
		// expired during retries: one refresh, one retry.
		log.Info("access token refused; refreshing and retrying once", "expired", expired)
		if err := turn.toNetwork(ctx); err != nil {
			return err
		}
		if err := refresh(); err != nil {
			return err
		}
		err = fetchAndSave()
	}
	return err
}

// checkBaseURL refuses a connection whose base URL in snapshots.db breaks
// the URL rule or differs from the one tokens.db holds beside its tokens.
// Nothing is sent then; the state stays as it is, so putting the URL back
// is enough, and a meant change is a re-connect.
func checkBaseURL(c store.Connection, vaultURL string) error {
	reconnect := fmt.Sprintf("if the provider really moved, re-connect: syncer connect %s -name %s -url URL (or syncer import)", c.Provider, c.Name)
	if err := provider.CheckBaseURL(c.BaseURL); err != nil {
		return fmt.Errorf("%s: refusing to sync: the base URL in snapshots.db breaks the URL rule: %v; nothing was sent; %s", c.Provider, err, reconnect)
	}
	if vaultURL == "" {
		return fmt.Errorf("%s: refusing to sync: tokens.db does not say which URL these tokens belong to; nothing was sent; re-connect: syncer connect %s -name %s (or syncer import)", c.Provider, c.Provider, c.Name)
	}
	if c.BaseURL != vaultURL {
		return fmt.Errorf("%s: refusing to sync: the base URL in snapshots.db (%q) is not the one the tokens were issued by (%q, in tokens.db); nothing was sent; set it back, or %s", c.Provider, c.BaseURL, vaultURL, reconnect)
	}
	return nil
}

// slots bound what a run does at once. network holds the connections
// talking to their providers (SYNCER_CONCURRENCY of them). A connection
// whose answer is in hand trades its network slot for a save slot, so the
// next connection's requests go out while it waits for the store's single
// writer: with 100 portfolios of 1,000 investments the writes had kept the
// network idle for half the run. Two save slots keep the writer busy (one
// writing, one ready); more would only hold more decoded answers in memory.
type slots struct {
	network chan struct{}
	save    chan struct{}
}

func newSlots(concurrency int) *slots {
	return &slots{network: make(chan struct{}, concurrency), save: make(chan struct{}, 2)}
}

// turn is one connection's passage through the slots. Its network slot is
// taken before it starts (Run waits for it there, so a cancelled run starts
// no more connections).
func (s *slots) turn() *turn { return &turn{slots: s, network: true} }

type turn struct {
	slots         *slots
	network, save bool
}

// toSave waits for a save slot, holding the network slot meanwhile (no
// connection starts while two answers already wait), then gives the network
// slot back.
func (t *turn) toSave(ctx context.Context) error {
	if t.save {
		return nil
	}
	select {
	case t.slots.save <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.save = true
	<-t.slots.network
	t.network = false
	return nil
}

// toNetwork is the way back, for a connection that must talk to its
// provider again (a retry after an error answer found while storing). It
// gives its save slot back first and holds nothing while it waits for a
// network slot: holding the save slot meanwhile could deadlock with
// connections that hold network slots and wait for a save slot.
func (t *turn) toNetwork(ctx context.Context) error {
	if t.network {
		return nil
	}
	if t.save {
		<-t.slots.save
		t.save = false
	}
	select {
	case t.slots.network <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.network = true
	return nil
}

// end gives back whatever slots the connection still holds.
func (t *turn) end() {
	if t.network {
		<-t.slots.network
	}
	if t.save {
		<-t.slots.save
	}
}

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

// grantGrace is how long a token grant already under way may go on after
// the run is cancelled; well under the scheduler's 10s stop bound.
const grantGrace = 5 * time.Second

// withGrace returns a context that ends grace after parent ends (or when
// cancel is called), not at once.
func withGrace(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { time.AfterFunc(grace, cancel) })
	return ctx, func() { stop(); cancel() }
}

// boundConnection is a connection's provider calls, made uniform.
type boundConnection struct {
	refresh func(ctx context.Context, refresh provider.Secret) (provider.Token, error)
	// fetch pulls the data and returns how to store it; scrubRaw cleans
	// the raw answer before it is stored.
	fetch func(ctx context.Context, access provider.Secret, scrubRaw func([]byte) []byte) (saveFunc, error)
}

type saveFunc func(ctx context.Context, st Store, connID int64, period, fetchedAt time.Time) error

func (s *Syncer) bind(c store.Connection) (boundConnection, error) {
	switch c.Provider {
	case everreal.Name:
		if s.Clients.EverReal == nil {
			return boundConnection{}, errors.New("everreal: not configured (set SYNCER_EVERREAL_CLIENT_ID and SYNCER_EVERREAL_CLIENT_SECRET)")
		}
		api := s.Clients.EverReal(c.BaseURL)
		return boundConnection{
			refresh: api.Refresh,
			fetch: func(ctx context.Context, access provider.Secret, scrubRaw func([]byte) []byte) (saveFunc, error) {
				u, err := api.Me(ctx, access)
				if err != nil {
					return nil, err
				}
				snap := everRealSnapshot(u)
				snap.Raw = scrubRaw(snap.Raw)
				return func(ctx context.Context, st Store, id int64, period, at time.Time) error {
					return st.SaveEverReal(ctx, id, period, at, snap)
				}, nil
			},
		}, nil
	case estateguru.Name:
		if s.Clients.EstateGuru == nil {
			return boundConnection{}, errors.New("estateguru: not configured (set SYNCER_ESTATEGURU_CLIENT_ID and SYNCER_ESTATEGURU_CLIENT_SECRET)")
		}
		api := s.Clients.EstateGuru(c.BaseURL)
		return boundConnection{
			refresh: api.Refresh,
			fetch: func(ctx context.Context, access provider.Secret, scrubRaw func([]byte) []byte) (saveFunc, error) {
				answer, err := api.FetchInvestments(ctx, access)
				if err != nil {
					return nil, err
				}
				return func(ctx context.Context, st Store, id int64, period, at time.Time) error {
					return saveEstateGuru(ctx, st, id, period, at, answer, scrubRaw)
				}, nil
			},
		}, nil
	}
	return boundConnection{}, fmt.Errorf("unknown provider %q", c.Provider)
}

func everRealSnapshot(u *everreal.User) store.EverRealSnapshot {
	snap := store.EverRealSnapshot{
		UserID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		IsActive: u.IsActive, IsTenant: u.IsTenant, TermsAccepted: u.TermsAccepted,
		Language: u.Language, CompanyID: u.CompanyID, CompanyName: u.CompanyName,
		PartnerID: u.PartnerID, PartnerName: u.PartnerName, PartnerSubdomain: u.PartnerSubdomain,
		Scopes: u.Scopes, Raw: u.Raw,
	}
	for _, c := range u.Companies {
		snap.Companies = append(snap.Companies, store.Company{ID: c.ID, Name: c.Name, IsDefault: c.IsDefault})
	}
	return snap
}

// saveEstateGuru stores an answer while it is decoded (estateguru.Stream):
// for a large portfolio the decoding then overlaps the writing. An answer
// the stream declines (an error answer, or anything unusual) is decoded in
// full instead, which gives its error or its portfolio, and stored in a
// second transaction; the first one, if it began, stored nothing.
func saveEstateGuru(ctx context.Context, st Store, id int64, period, at time.Time, answer *estateguru.Answer, scrubRaw func([]byte) []byte) error {
	stream := answer.Stream()
	defer stream.Close()
	currency, cash, ok, err := stream.Header(ctx)
	if err != nil {
		return err
	}
	if ok {
		snap := store.EstateGuruSnapshot{Currency: currency, CashCents: cash, Raw: scrubRaw(answer.Raw()),
			Investments: converted(stream.Investments())}
		err := st.SaveEstateGuru(ctx, id, period, at, snap)
		if !errors.Is(err, estateguru.ErrNotStreamed) {
			return err
		}
	}
	p, err := answer.Decode()
	if err != nil {
		return err
	}
	return st.SaveEstateGuru(ctx, id, period, at, store.EstateGuruSnapshot{
		Currency: p.Currency, CashCents: p.CashCents, Raw: scrubRaw(p.Raw),
		Investments: converted(func(yield func(estateguru.Investment, error) bool) {
			for _, inv := range p.Investments {
				if !yield(inv, nil) {
					return
				}
			}
		}),
	})
}

// converted is the provider's investments as the store takes them, one by
// one: no second copy of a large portfolio.
func converted(invs iter.Seq2[estateguru.Investment, error]) iter.Seq2[store.Investment, error] {
	return func(yield func(store.Investment, error) bool) {
		for inv, err := range invs {
			if !yield(store.Investment(inv), err) {
				return
			}
		}
	}
}

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
