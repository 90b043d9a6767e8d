// One connection's turn in a run: lock, token, fetch, save, record.

package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

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
		// A refreshed token still being saved is durable, or kept in
		// memory, before the outcome is recorded; its failure is part of
		// the outcome, whatever else happened.
		if tokens != nil {
			if serr := tokens.settle(); serr != nil {
				if err == nil {
					err = serr
				} else {
					err = fmt.Errorf("%w; and %w", err, serr)
				}
			}
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
		// A provider's verdict that arrived during shutdown (the refresh
		// grant outlives cancellation by its grace) is still a verdict: an
		// invalid_grant must mark the connection, or the next run would
		// send the refused token again.
		if ctx.Err() != nil && err != nil && provider.KindOf(err) != provider.KindReauth {
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
// stores it, holding a share of the save budget for the store's writer.
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
	size := 1
	if sz, ok := snap.(sizedSnapshot); ok {
		size = sz.Size()
	}
	if err := turn.toSave(ctx, size); err != nil {
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
