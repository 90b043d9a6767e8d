package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	gosync "sync"
	"sync/atomic"
)

// Group commit: writes that queue for a database while another is being
// written go in together, in one transaction, each in a savepoint of its
// own, so one that fails leaves the others whole.
//
// Why: with 10,000 connections a run made four small transactions per
// connection (the rotated token in tokens.db, and its expiry, the snapshot
// and the result in snapshots.db). Each commit writes every page it touched
// to the WAL again, and in tokens.db (synchronous=FULL) waits for the disk:
// the single writer was busy all run long and the connections with answers
// in hand queued behind it (bench/README.md). Committed together, the shared
// pages (the connection table, the indexes, the run's results) are written
// once per batch and tokens.db syncs once per batch. Each caller still
// returns only after the commit that holds its write: a rotated token is on
// disk before it is used, as before.

// groupWrite is one write waiting for a group commit.
type groupWrite struct {
	ctx   context.Context
	write func(ctx context.Context, conn *sql.Conn, tx *sql.Tx) error
	done  chan error // buffered: the leader never waits for the caller
	// alone: committed in a transaction of its own (writeAlone).
	alone bool
	// panicked is the value of a panic in write, re-raised in the
	// caller's goroutine (group), where its own recover is.
	panicked any
}

// writeQueue holds the writes waiting for a database's write gate.
type writeQueue struct {
	mu      gosync.Mutex
	waiting []*groupWrite
	commits atomic.Int64 // group commits so far (the tests count them)
}

// maxBatch bounds the writes committed together: after a long hold of the
// gate (a checkpoint, retention) the queue may be long, and one failing
// commit fails its whole batch.
const maxBatch = 128

// errBatchAborted is the error of a write whose shared transaction another
// write of the batch ended (an I/O error, a full disk): nothing of it was
// written. It does not wrap the other write's error, which is its own
// caller's.
var errBatchAborted = errors.New("not written: a write committed with it in the same transaction failed, and the transaction with it")

// group runs write in a write transaction, under the write gate, with
// whatever other writes queued meanwhile. The caller that takes the gate
// writes the queue (its own write and the others', up to maxBatch) and
// commits; the others wait for its word. write must do only the database
// work (no waiting on anything else): the others wait while it runs.
//
// A write that returns an error is rolled back alone (ROLLBACK TO its
// savepoint) and that error is its caller's. In a batch a write runs to its
// end even if its caller gives up meanwhile (SQLite would roll back the
// whole transaction on an interrupted statement), and is then rolled back
// alone. When the transaction itself fails, the write that ended it gets
// its error, the others errBatchAborted, and the commit's error goes to
// every write of the batch. A panic in write is re-raised in its caller's
// goroutine, after its savepoint is rolled back.
func (d *database) group(ctx context.Context, write func(ctx context.Context, conn *sql.Conn, tx *sql.Tx) error) error {
	return d.enqueue(&groupWrite{ctx: ctx, write: write, done: make(chan error, 1)})
}

// writeAlone is group for a large write: it waits its turn in the same
// queue but is committed in a transaction of its own. In a batch its
// savepoint would copy every page it changes that an earlier write of the
// batch touched (SQLite's sub-journal) to gain a commit that costs little
// beside it.
func (d *database) writeAlone(ctx context.Context, write func(ctx context.Context, conn *sql.Conn, tx *sql.Tx) error) error {
	return d.enqueue(&groupWrite{ctx: ctx, write: write, done: make(chan error, 1), alone: true})
}

func (d *database) enqueue(w *groupWrite) error {
	ctx := w.ctx
	d.queue.mu.Lock()
	d.queue.waiting = append(d.queue.waiting, w)
	d.queue.mu.Unlock()
	for {
		select {
		case err := <-w.done:
			if w.panicked != nil {
				panic(w.panicked)
			}
			return err
		case d.gate <- struct{}{}:
			// Writes queued before the gate was taken are written by
			// whoever holds it; w too, by this leader or an earlier one,
			// unless the queue was longer than a batch.
			func() {
				defer func() { <-d.gate }()
				d.writeBatch(d.takeQueue())
			}()
		case <-ctx.Done():
			if d.dequeue(w) {
				return ctx.Err()
			}
			// A leader has it: its outcome is the answer.
			err := <-w.done
			if w.panicked != nil {
				panic(w.panicked)
			}
			return err
		}
	}
}

// takeQueue takes the next batch: the writes waiting, up to maxBatch and
// up to the first that goes alone, or that one by itself.
func (d *database) takeQueue() []*groupWrite {
	d.queue.mu.Lock()
	defer d.queue.mu.Unlock()
	n := 0
	for n < min(len(d.queue.waiting), maxBatch) {
		if d.queue.waiting[n].alone {
			n = max(n, 1)
			break
		}
		n++
	}
	batch := slices.Clone(d.queue.waiting[:n])
	d.queue.waiting = slices.Delete(d.queue.waiting, 0, n)
	return batch
}

// dequeue takes w out of the queue; false if a leader has taken it.
func (d *database) dequeue(w *groupWrite) bool {
	d.queue.mu.Lock()
	defer d.queue.mu.Unlock()
	i := slices.Index(d.queue.waiting, w)
	if i < 0 {
		return false
	}
	d.queue.waiting = slices.Delete(d.queue.waiting, i, i+1)
	return true
}

// writeBatch writes a batch in one transaction and tells each write its
// outcome. The transaction is not tied to any one caller's context.
func (d *database) writeBatch(batch []*groupWrite) {
	if len(batch) == 0 {
		return
	}
	results := make([]error, len(batch))
	err := d.writeBatchTx(batch, results)
	for i, w := range batch {
		if err != nil && results[i] == nil {
			results[i] = err
		}
		w.done <- results[i]
	}
}

// run runs w's write with ctx, turning a panic into an error (and keeping
// its value for the caller).
func (w *groupWrite) run(ctx context.Context, conn *sql.Conn, tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.panicked = p
			err = fmt.Errorf("store: a write panicked: %v", p)
		}
	}()
	return w.write(ctx, conn, tx)
}

func (d *database) writeBatchTx(batch []*groupWrite, results []error) error {
	ctx := context.WithoutCancel(batch[0].ctx)
	conn, err := d.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(batch) == 1 {
		// Alone: its error is the transaction's, and its caller's
		// cancellation may interrupt it.
		w := batch[0]
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := w.run(w.ctx, conn, tx); err != nil {
			return err
		}
		return d.commit(tx)
	}
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			return err
		}
		err := w.run(context.WithoutCancel(w.ctx), conn, tx)
		if err == nil && w.ctx.Err() != nil {
			err = w.ctx.Err() // its caller gave up meanwhile: not kept
		}
		if err != nil {
			results[i] = err
			// Some errors (an I/O error, a full disk) end the whole
			// transaction: then this rollback fails and the batch with it.
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO w"); rerr != nil {
				for j := range batch {
					if j != i && results[j] == nil {
						results[j] = errBatchAborted
					}
				}
				return nil
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
			return err
		}
	}
	if !slices.ContainsFunc(results, func(err error) bool { return err == nil }) {
		return nil // nothing to commit; every caller has its own error
	}
	return d.commit(tx)
}

func (d *database) commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return err
	}
	d.queue.commits.Add(1)
	return nil
}
