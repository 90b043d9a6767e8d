// Package sync runs syncs: for each connection, make sure its token is fresh,
// fetch its data, hand the result to the store. It also holds the scheduler.
//
// It talks to the store through the Store interface below and to each
// provider through Provider (providers.go), whose adapters for EverReal and
// EstateGuru are here too; cmd/syncer wires the real ones. One connection's
// sync reads top to bottom in syncConnection (connection.go): lock, token (tokenSource,
// token.go), fetch, save, record; slots.go bounds how many run at once, and
// hostqueue.go takes them a queue per provider host, side by side;
// summary.go adds up what a run did.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdsync "sync"
	"time"

	"github.com/syncerhq/syncer/store"
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

	// writable is the write check of tokens.db before refreshes (token.go).
	writable writeCheck
	// kept holds refreshed tokens whose save failed, for the next run.
	kept keptTokens
}

// Observer hears what runs do. Its methods are called on the run's
// goroutine and must return soon; they cannot fail the run.
type Observer interface {
	RunStarted(ctx context.Context, runID int64, trigger string)
	RunFinished(ctx context.Context, sum Summary)
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
			// select picks at random when the run is stopped too: a
			// stopped run starts no more connections.
			if ctx.Err() != nil {
				<-slots.network
				break loop
			}
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
