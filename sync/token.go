package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	stdsync "sync"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/provider"
)

// tokenSource hands out one connection's access token during one sync. It
// refreshes when the token is missing or about to expire, and once more
// after Invalidate (the provider refused the token). A refreshed token is
// saved while its access token is used, and the save is waited for before
// any further refresh and before the connection's outcome is recorded
// (settle): the provider may have rotated the refresh token, making the
// stored one dead. When that save fails the token is kept in memory
// (keptTokens) and saved first by this process's next run.
type tokenSource struct {
	store    Store
	kept     *keptTokens
	writable *writeCheck
	connID   int64
	provider Provider
	log      *slog.Logger
	now      func() time.Time
	margin   time.Duration // an access token expiring within it is refreshed first
	// mayRefresh, if set, fails when no refresh may be asked for now
	// (a shared store's claim on the connection may lapse).
	mayRefresh func(ctx context.Context) error

	tok       provider.Token
	refreshed bool     // this sync refreshed once already
	secrets   []string // every token value seen, for scrubbing error text
	saving    *tokenSave
}

// tokenSave is a refreshed token being saved while it is used (refresh).
type tokenSave struct {
	done     chan error
	tok      provider.Token
	replaces provider.Secret // the refresh token it was refreshed from
}

// newTokenSource loads the connection's stored token, checks that the
// tokens go where they were issued, and saves the token an earlier run of
// this process kept in memory, if it still replaces the stored one.
func (s *Syncer) newTokenSource(ctx context.Context, c store.Connection, p Provider, log *slog.Logger) (*tokenSource, error) {
	connID := c.ID
	ts := &tokenSource{store: s.Store, kept: &s.kept, writable: &s.writable, connID: connID, provider: p, log: log,
		now: s.now, margin: s.refreshMargin()}
	stored, err := s.Store.Token(ctx, connID)
	if err != nil {
		return ts, err
	}
	ts.tok = stored.Token
	ts.secrets = append(ts.secrets, ts.tok.Secrets()...)
	// Tokens go only where they were issued: never to a URL that someone
	// who can write snapshots.db put there.
	if err := checkBaseURL(c, stored.BaseURL); err != nil {
		return ts, err
	}
	if u, ok := ts.kept.take(connID); ok && u.replaces == ts.tok.Refresh {
		ts.secrets = append(ts.secrets, u.tok.Secrets()...)
		err := saveToken(ctx, s.Store, connID, u.tok, ts.secrets)
		switch {
		case err == nil:
			log.Info("saved the token refreshed in an earlier run")
		case errors.Is(err, store.ErrExpiryNotMirrored):
			// Durable in the vault, as settle says of a fresh token.
			log.Warn("saved the token refreshed in an earlier run, but its expiry was not copied to the reports", "error", err.Error())
		default:
			ts.kept.keep(connID, u)
			return ts, fmt.Errorf("the token refreshed in an earlier run still cannot be saved (it stays in memory): %w", err)
		}
		ts.tok = u.tok
	}
	return ts, nil
}

// saveToken saves a refreshed token. A panic in the store comes back as an
// error, its text scrubbed of the secrets, so that the caller keeps the
// token in memory instead of losing it with the goroutine.
func saveToken(ctx context.Context, st Store, connID int64, tok provider.Token, secrets []string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error while saving: %v", provider.ScrubText(fmt.Sprint(p), secrets...))
		}
	}()
	return st.SaveToken(context.WithoutCancel(ctx), connID, tok)
}

// Token returns an access token, refreshing first if it is missing,
// expires within the margin, or was invalidated.
func (ts *tokenSource) Token(ctx context.Context) (provider.Secret, error) {
	t := ts.tok
	if t.Access.IsZero() || t.AccessExpiresAt.IsZero() || !t.AccessExpiresAt.After(ts.now().Add(ts.margin)) {
		// The last refresh's token is durable (or kept) before the
		// next refresh is asked for.
		if err := ts.settle(); err != nil {
			return "", err
		}
		if err := ts.refresh(ctx); err != nil {
			return "", err
		}
	}
	return ts.tok.Access, nil
}

// Invalidate drops the access token the provider refused, so that the next
// Token refreshes. It reports whether a retry is worth it: not when this
// sync already refreshed (the fresh token was refused too), unless that
// token has expired since (a data call retried after 5xx answers can
// outlive a short-lived access token); and whether it had expired.
func (ts *tokenSource) Invalidate() (retry, expired bool) {
	expired = !ts.tok.AccessExpiresAt.IsZero() && !ts.now().Before(ts.tok.AccessExpiresAt)
	if ts.refreshed && !expired {
		return false, expired
	}
	ts.tok.Access = ""
	return true, expired
}

// Secrets is every token value the source has seen.
func (ts *tokenSource) Secrets() []string { return ts.secrets }

// ErrTokenKept is wrapped by the error of a refreshed token that could not
// be saved: it is kept in memory, and saved first by this process's next
// run. A process that stops before then loses it.
var ErrTokenKept = errors.New("it is kept in memory and saved by this process's next run")

// grantGrace is how long a token grant already under way may go on after
// the run is cancelled; well under the scheduler's 10s stop bound.
const grantGrace = 5 * time.Second

func (ts *tokenSource) refresh(ctx context.Context) error {
	// A stopped run asks for no new grant: the grace below is for a grant
	// already sent, and a write check that passed within the last second
	// would not notice the stop.
	if err := ctx.Err(); err != nil {
		return err
	}
	if ts.mayRefresh != nil {
		if err := ts.mayRefresh(ctx); err != nil {
			return err
		}
	}
	// A refresh may rotate the token: never ask for one that could not be
	// saved.
	if err := ts.writable.check(ctx, ts.store, ts.now); err != nil {
		return fmt.Errorf("not refreshing, a new token could not be saved: %w", err)
	}
	// A grant once sent is seen through a shutdown (for a few seconds):
	// EstateGuru rotates on every refresh, so abandoning the answer would
	// lose the only valid refresh token.
	grantCtx, cancel := provider.WithGrace(ctx, grantGrace)
	defer cancel()
	fresh, err := ts.provider.Refresh(grantCtx, ts.tok.Refresh)
	if err != nil {
		return err
	}
	ts.refreshed = true
	ts.secrets = append(ts.secrets, fresh.Secrets()...)
	// The new token is saved while its access token fetches the data:
	// the save (a disk sync in tokens.db, then the expiry copied to
	// snapshots.db) was the time between a connection's two requests.
	// Using the access token meanwhile changes nothing a crash would lose:
	// until the save is done, a crash loses the rotated refresh token
	// either way. settle waits for the save before the next refresh and
	// before the connection's outcome is recorded.
	save := &tokenSave{done: make(chan error, 1), tok: fresh, replaces: ts.tok.Refresh}
	secrets := slices.Clone(ts.secrets)
	go func() { save.done <- saveToken(ctx, ts.store, ts.connID, fresh, secrets) }()
	ts.saving = save
	ts.tok = fresh
	ts.log.Debug("token refreshed", "access_expires_at", fresh.AccessExpiresAt, "refresh_expires_at", fresh.RefreshExpiresAt)
	return nil
}

// settle waits for the refreshed token's save, if one is under way. If it
// failed, the token is kept in memory for this process's next run and the
// error says so (once).
func (ts *tokenSource) settle() error {
	save := ts.saving
	if save == nil {
		return nil
	}
	ts.saving = nil
	err := <-save.done
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrExpiryNotMirrored):
		// Durable in the vault: only the reporting copy of its expiry
		// is behind.
		ts.log.Warn("refreshed token saved, but its expiry was not copied to the reports", "error", err.Error())
		return nil
	default:
		// The vault failed a write: the next refresh checks it again
		// first, whatever check passed within the last second.
		ts.writable.forget()
		ts.kept.keep(ts.connID, keptToken{tok: save.tok, replaces: save.replaces})
		return fmt.Errorf("saving the refreshed token: %w (%w)", err, ErrTokenKept)
	}
}

// writeCheck is the check, before a refresh, that tokens.db takes a durable
// write now. A check that passed holds for writableFor: made before every
// refresh, it was a disk sync per connection, in the way of every
// connection's first request. A vault that fails within that time fails
// the save instead, and the token is kept in memory (keptTokens). The zero
// value is ready to use.
type writeCheck struct {
	mu     stdsync.Mutex
	passed time.Time // when the last check that passed began
	// forgotten counts forget calls: a check under way while a save
	// failed does not count as passed.
	forgotten uint64
}

// writableFor is how long a passed write check holds.
const writableFor = time.Second

// forget makes the next check ask the vault again.
func (w *writeCheck) forget() {
	w.mu.Lock()
	w.passed = time.Time{}
	w.forgotten++
	w.mu.Unlock()
}

func (w *writeCheck) check(ctx context.Context, st Store, now func() time.Time) error {
	w.mu.Lock()
	fresh := !w.passed.IsZero() && now().Sub(w.passed) < writableFor
	forgotten := w.forgotten
	w.mu.Unlock()
	if fresh {
		return nil
	}
	began := now()
	if err := st.CheckWritable(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	// A save that failed while this check was under way says more about
	// the vault now than this check did: the next refresh checks again.
	if w.forgotten == forgotten {
		w.passed = began
	}
	w.mu.Unlock()
	return nil
}

// keptTokens holds refreshed tokens whose save failed (the disk filled
// between the write check and the save, say), by connection. The provider
// may have rotated the refresh token, making the stored one dead, so this
// is the only good one: this process's next run saves it before anything
// else. The zero value is ready to use.
type keptTokens struct {
	mu     stdsync.Mutex
	tokens map[int64]keptToken
}

type keptToken struct {
	tok provider.Token
	// replaces is the refresh token it was refreshed from. Only while that
	// one is still the stored one is it saved: anything else stored since
	// (a re-connect, or this very token, if only a later step of the save
	// failed) is at least as new and wins.
	replaces provider.Secret
}

func (k *keptTokens) keep(connID int64, t keptToken) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.tokens == nil {
		k.tokens = make(map[int64]keptToken)
	}
	k.tokens[connID] = t
}

func (k *keptTokens) take(connID int64) (keptToken, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.tokens[connID]
	delete(k.tokens, connID)
	return t, ok
}
