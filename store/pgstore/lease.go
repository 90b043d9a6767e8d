package pgstore

import (
	"context"
	"errors"
	"fmt"
	stdsync "sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
)

// A connection's turn is a lease: a row in connection_lease naming the
// holder (hostname:pid) with an expiry, renewed every third of the lease
// while the turn lasts, and a fence number raised on every claim.
//
// Why a lease and not an advisory lock: a session advisory lock lives as
// long as one server session, so each turn in flight would pin a pooled
// connection (16 at SYNCER_CONCURRENCY=16), it does not work behind a
// transaction-pooling PgBouncer, and a holder cut off by the network keeps
// it until the server's TCP keepalive notices, which may be far longer
// than any bound we can state. A lease ends at a time written in the row,
// whatever happened to its holder: an instance killed mid-turn delays its
// connections by at most one lease period. And what a lease cannot do
// alone, stop a holder that lost it from writing, the token save does: it
// is a compare-and-swap on the token's generation (SaveToken), so a
// late writer can never overwrite a newer token.

var _ sync.Claimer = (*Store)(nil)

// ErrLeaseLost is wrapped by Claim.Valid's error when the lease lapsed or
// is about to.
var ErrLeaseLost = errors.New("this instance's claim on the connection lapsed")

type claim struct {
	s      *Store
	connID int64
	fence  int64
	period string // "" for LockConnection's claims
	stop   chan struct{}
	done   chan struct{}
	once   stdsync.Once
	mu     stdsync.Mutex
	lost   bool // a renewal found the lease another's
}

// ClaimConnection claims the connection's turn for this instance, or fails
// at once with an error wrapping sync.ErrSkip when another instance holds
// it or (unless anew) synced it in this period (period is its start).
func (s *Store) ClaimConnection(ctx context.Context, connID int64, period time.Time, anew bool) (sync.Claim, error) {
	p := period.UTC().Format(store.TimeFormat)
	c, err := s.tryClaim(ctx, connID, p, anew)
	if err != nil || c != nil {
		return c, err
	}
	var holder, syncedBy *string
	var syncedPeriod *string
	var left time.Duration
	err = s.pool.QueryRow(ctx, `SELECT holder, greatest(expires_at - now(), '0'::interval), synced_period, synced_by
		FROM connection_lease WHERE connection_id = $1`, connID).Scan(&holder, &left, &syncedPeriod, &syncedBy)
	if err != nil {
		return nil, dbError("read lease", err, "")
	}
	if holder != nil && left > 0 {
		return nil, fmt.Errorf("%w: %s is syncing it (its lease ends in %s)", sync.ErrSkip, *holder, left.Round(time.Second))
	}
	if syncedPeriod != nil && *syncedPeriod == p && syncedBy != nil {
		return nil, fmt.Errorf("%w: %s synced it in this period (%s)", sync.ErrSkip, *syncedBy, p)
	}
	return nil, fmt.Errorf("%w: claimed by another instance meanwhile", sync.ErrSkip)
}

// LockConnection claims the connection's turn for a command (connect,
// disconnect, and syncs through a store without Claimer), waiting up to
// wait for another instance's turn to end.
func (s *Store) LockConnection(ctx context.Context, connID int64, wait time.Duration) (unlock func(), err error) {
	deadline := time.Now().Add(wait)
	delay := 50 * time.Millisecond
	for {
		c, err := s.tryClaim(ctx, connID, "", true)
		if err != nil {
			return nil, err
		}
		if c != nil {
			return func() { c.Release(false) }, nil
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: gave up after %s", store.ErrLockTimeout, wait)
		}
		t := time.NewTimer(min(delay, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// tryClaim takes the lease if it is free (no holder, or expired) and, for a
// period claim, the connection was not synced in that period by another
// instance. It returns nil, nil when it is not to be had.
func (s *Store) tryClaim(ctx context.Context, connID int64, period string, anew bool) (*claim, error) {
	// The row exists for connections made by syncer; one copied or made
	// by hand gets it here.
	if _, err := s.pool.Exec(ctx, "INSERT INTO connection_lease (connection_id) VALUES ($1) ON CONFLICT DO NOTHING", connID); err != nil {
		return nil, dbError("claim connection", err, "")
	}
	var fence int64
	err := s.pool.QueryRow(ctx, `UPDATE connection_lease
		SET holder = $2, fence = fence + 1, expires_at = now() + $3::interval
		WHERE connection_id = $1
		  AND (holder IS NULL OR expires_at <= now())
		  AND ($5 OR synced_period IS DISTINCT FROM $4 OR synced_by = $2)
		RETURNING fence`, connID, s.instance, s.lease, period, anew || period == "").Scan(&fence)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError("claim connection", err, "")
	}
	c := &claim{s: s, connID: connID, fence: fence, period: period, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	s.claims[connID] = c
	s.mu.Unlock()
	go c.renewLoop()
	return c, nil
}

// heldClaim is this process's claim on the connection, or nil.
func (s *Store) heldClaim(connID int64) *claim {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims[connID]
}

func (c *claim) renewLoop() {
	defer close(c.done)
	t := time.NewTicker(c.s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.s.lease/3)
		tag, err := c.s.pool.Exec(ctx, `UPDATE connection_lease SET expires_at = now() + $3::interval
			WHERE connection_id = $1 AND holder = $2 AND fence = $4`, c.connID, c.s.instance, c.s.lease, c.fence)
		cancel()
		// A failed renewal is tried again at the next tick; Valid asks the
		// server before any refresh in any case.
		if err == nil && tag.RowsAffected() == 0 {
			c.mu.Lock()
			c.lost = true
			c.mu.Unlock()
			return
		}
	}
}

// Valid fails unless the lease is still this instance's, by the server's
// word, with at least half a lease period left: enough for a token grant
// under way to finish before another instance could claim the connection.
func (c *claim) Valid(ctx context.Context) error {
	c.mu.Lock()
	lost := c.lost
	c.mu.Unlock()
	if lost {
		return fmt.Errorf("%w (not refreshing: another instance may hold it now)", ErrLeaseLost)
	}
	var left time.Duration
	err := c.s.pool.QueryRow(ctx, `SELECT expires_at - now() FROM connection_lease
		WHERE connection_id = $1 AND holder = $2 AND fence = $3`, c.connID, c.s.instance, c.fence).Scan(&left)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (not refreshing: another instance may hold it now)", ErrLeaseLost)
	}
	if err != nil {
		return dbError("check lease", err, "")
	}
	if left < c.s.lease/2 {
		return fmt.Errorf("%w: %s left of it, too little for a token grant (not refreshing)", ErrLeaseLost, left.Round(time.Millisecond))
	}
	return nil
}

// Release ends the turn. synced records the period as synced by this
// instance. It is best effort: a release that fails leaves the lease to
// expire on its own.
func (c *claim) Release(synced bool) {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.s.mu.Lock()
		if c.s.claims[c.connID] == c {
			delete(c.s.claims, c.connID)
		}
		c.s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		period := c.period
		if !synced {
			period = ""
		}
		_, _ = c.s.pool.Exec(ctx, `UPDATE connection_lease SET holder = NULL, expires_at = 'epoch',
			synced_period = CASE WHEN $4 <> '' THEN $4 ELSE synced_period END,
			synced_by = CASE WHEN $4 <> '' THEN $2 ELSE synced_by END
			WHERE connection_id = $1 AND holder = $2 AND fence = $3`, c.connID, c.s.instance, c.fence, period)
	})
}
