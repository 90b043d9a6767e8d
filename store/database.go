package store

import (
	"context"
	"database/sql"
)

// database is one SQLite file: its connection pool, and a write gate that
// lets one write transaction of this process at a time at it.
//
// Why the gate: SQLite takes one writer at a time anyway, and a writer that
// finds the lock taken waits in SQLite's busy handler, which sleeps and
// polls (1, 2, 5, 10 ... up to 100 ms), so with 16 connections syncing at
// once the lock sat idle between writers while they slept. Queued on a Go
// channel instead, the next writer starts the moment the last commits.
// Readers never take the gate (WAL lets them read beside the writer), and
// other processes (a `syncer -once` beside the daemon) still meet the busy
// timeout.
type database struct {
	*sql.DB
	gate chan struct{}
}

func newDatabase(db *sql.DB) *database {
	return &database{DB: db, gate: make(chan struct{}, 1)}
}

// lockWrites takes the write gate, or gives up when ctx ends.
func (d *database) lockWrites(ctx context.Context) (unlock func(), err error) {
	select {
	case d.gate <- struct{}{}:
		return func() { <-d.gate }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// begin starts a write transaction (BEGIN IMMEDIATE, from _txlock in the
// DSN) holding the write gate until Commit or Rollback.
func (d *database) begin(ctx context.Context) (*writeTx, error) {
	unlock, err := d.lockWrites(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		unlock()
		return nil, err
	}
	return &writeTx{Tx: tx, unlock: unlock}, nil
}

// exec runs one writing statement under the write gate.
func (d *database) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	unlock, err := d.lockWrites(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return d.ExecContext(ctx, query, args...)
}

// writeTx is a transaction holding its database's write gate.
type writeTx struct {
	*sql.Tx
	unlock func()
}

// Commit commits and lets the next writer in.
func (t *writeTx) Commit() error {
	defer t.release()
	return t.Tx.Commit()
}

// Rollback rolls back (a no-op after Commit) and lets the next writer in.
func (t *writeTx) Rollback() error {
	defer t.release()
	return t.Tx.Rollback()
}

func (t *writeTx) release() {
	if t.unlock != nil {
		t.unlock()
		t.unlock = nil
	}
}
