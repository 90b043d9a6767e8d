package store

import (
	"context"
	"database/sql"
	"math/bits"
	gosync "sync"
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
	gate  chan struct{}
	queue writeQueue // writes waiting to be committed together (group.go)
	stmts gosync.Map // query text -> *sql.Stmt (prepared)
}

// idleConns is how many connections a pool keeps open between uses.
// database/sql keeps 2, and a sync run uses more at once (a writer, and
// readers beside it), so it closed and reopened connections all run long,
// each time running the DSN's pragmas again and losing its prepared
// statements. Each one kept holds its own page cache: 8 cost 6 MB more
// peak memory than 4 with 10,000 connections, for no measurable gain.
const idleConns = 4

func newDatabase(db *sql.DB) *database {
	db.SetMaxIdleConns(idleConns)
	return &database{DB: db, gate: make(chan struct{}, 1)}
}

// prepared returns query prepared for reuse. The statements a sync run
// repeats for every connection are parsed once per pool connection instead
// of at every call: parsing them was a quarter of syncer's CPU with 10,000
// connections. database/sql prepares it again on each connection that runs
// it and keeps it there; tx.StmtContext uses that copy.
//
// Only fixed texts belong here (the cache is never emptied), not a
// statement built for a number of rows that varies. Preparing takes a pool
// connection of its own: a pool limited to one connection would wait for
// ever inside a transaction (syncer's pools are not limited).
func (d *database) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := d.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := d.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := d.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// txExec runs a statement of fixed text in tx, prepared once (prepared).
func (d *database) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := d.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// txQueryRow runs a query of fixed text in tx, prepared once (prepared).
// If it cannot be prepared it runs unprepared, so the error comes out of
// Scan, as QueryRowContext's would.
func (d *database) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	st, err := d.prepared(ctx, query)
	if err != nil {
		return tx.QueryRowContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}

// queryRow runs a query of fixed text outside any transaction, prepared
// once (prepared), or else as txQueryRow does.
func (d *database) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := d.prepared(ctx, query)
	if err != nil {
		return d.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Statements prepared here are closed with the pool: DB.Close finalizes
// every statement open on its connections.

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

// exec runs one writing statement, committed with whatever other writes
// are waiting (group).
func (d *database) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := d.group(ctx, func(ctx context.Context, _ *sql.Conn, tx *sql.Tx) error {
		var err error
		res, err = d.txExec(ctx, tx, query, args...)
		return err
	})
	return res, err
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

// preparedTx is a write transaction whose statements are prepared once
// per pool connection (database.prepared). Its statements must have fixed
// texts, or texts from a small fixed set: a statement for a number of rows
// goes through inPowersOfTwo.
type preparedTx struct {
	d  *database
	tx *sql.Tx
}

func (d *database) prepare(tx *sql.Tx) preparedTx { return preparedTx{d: d, tx: tx} }

// inPowersOfTwo cuts n rows into runs whose sizes are powers of two,
// largest first (100 rows: 64, 32, 4), and calls write for each with the
// run's first row and size. A statement built for a number of rows then
// comes in a handful of sizes, each prepared once per connection, however
// the number of rows varies from one write to the next.
func inPowersOfTwo(n int, write func(from, size int) error) error {
	from := 0
	for size := 1 << bits.Len(uint(n)); size > 0 && from < n; size >>= 1 {
		if n-from >= size {
			if err := write(from, size); err != nil {
				return err
			}
			from += size
		}
	}
	return nil
}

func (p preparedTx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.d.txExec(ctx, p.tx, query, args...)
}

func (p preparedTx) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return p.d.txQueryRow(ctx, p.tx, query, args...)
}

func (p preparedTx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.d.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return p.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}
