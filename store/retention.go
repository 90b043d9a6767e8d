package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// retainBatchRows bounds one retention transaction: snapshots are deleted
// together until their rows (the snapshot and its investments or companies)
// reach this many. A snapshot bigger than that goes alone, so no retention
// transaction is bigger than the one that wrote the snapshot. While it runs
// it holds the write lock; a sync in another process waits busy_timeout
// for it, so it must stay short.
const retainBatchRows = 5000

// snapshotTables are the snapshot tables retention walks, with the SQL that
// weighs a snapshot in rows. Their children go by ON DELETE CASCADE, in the
// same transaction as the snapshot: a reader never sees half a snapshot.
var snapshotTables = []struct {
	table, weight string
}{
	{"everreal_snapshot", "1 + (SELECT count(*) FROM everreal_company co WHERE co.connection_id = s.connection_id AND co.snapshot_at = s.snapshot_at)"},
	{"estateguru_snapshot", "1 + s.investments"},
}

// Retain deletes the snapshots taken before olderThan (their snapshot_at,
// the start of their period, is earlier), except each connection's newest:
// a connection that has not synced for longer than the retention still
// shows its last known state in the latest_* views. It deletes in small
// transactions, each its own BEGIN IMMEDIATE, and stops between them when
// ctx is cancelled. It returns how many snapshots it deleted.
//
// Run history (sync_runs) is kept: it is small and says when data was lost.
func (s *Store) Retain(ctx context.Context, olderThan time.Time) (int, error) {
	path := filepath.Join(s.dir, SnapshotsFile)
	cutoff := olderThan.UTC().Format(TimeFormat)
	deleted := 0
	for _, t := range snapshotTables {
		keys, err := s.expired(ctx, t.table, t.weight, cutoff)
		if err != nil {
			return deleted, fileError(path, "apply retention to", err)
		}
		for len(keys) > 0 {
			if err := ctx.Err(); err != nil {
				return deleted, err
			}
			n, rows := 0, int64(0)
			for n < len(keys) && (n == 0 || rows+keys[n].weight <= retainBatchRows) {
				rows += keys[n].weight
				n++
			}
			d, err := s.deleteSnapshots(ctx, t.table, cutoff, keys[:n])
			deleted += d
			if err != nil {
				return deleted, fileError(path, "apply retention to", err)
			}
			keys = keys[n:]
		}
	}
	return deleted, nil
}

type snapshotKey struct {
	connID int64
	at     string
	weight int64
}

// expired lists the snapshots of table older than cutoff that are not their
// connection's newest, oldest first.
func (s *Store) expired(ctx context.Context, table, weight, cutoff string) ([]snapshotKey, error) {
	rows, err := s.snapshots.QueryContext(ctx, `SELECT s.connection_id, s.snapshot_at, `+weight+`
		FROM `+table+` s
		WHERE s.snapshot_at < ?
		  AND s.snapshot_at < (SELECT max(m.snapshot_at) FROM `+table+` m WHERE m.connection_id = s.connection_id)
		ORDER BY s.snapshot_at, s.connection_id`, cutoff)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []snapshotKey
	for rows.Next() {
		var k snapshotKey
		if err := rows.Scan(&k.connID, &k.at, &k.weight); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// deleteSnapshots deletes one batch in one transaction. The conditions are
// checked again inside it, so a snapshot that became a connection's newest
// in the meantime (it cannot, short of a clock jump, but cheaply sure) stays.
func (s *Store) deleteSnapshots(ctx context.Context, table, cutoff string, keys []snapshotKey) (int, error) {
	tx, err := s.snapshots.begin(ctx) // BEGIN IMMEDIATE: _txlock in the DSN
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM `+table+`
		WHERE connection_id = ? AND snapshot_at = ? AND snapshot_at < ?
		  AND snapshot_at < (SELECT max(m.snapshot_at) FROM `+table+` m WHERE m.connection_id = ?)`)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	n := 0
	for _, k := range keys {
		res, err := stmt.ExecContext(ctx, k.connID, k.at, cutoff, k.connID)
		if err != nil {
			return 0, err
		}
		d, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += int(d)
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// WALCheckpoint is what one checkpoint did to one database's WAL.
type WALCheckpoint struct {
	File string // SnapshotsFile or TokensFile
	// Busy: a reader holding an older snapshot, or a writer in another
	// process, kept the checkpoint from finishing, so the WAL was not
	// truncated. The frames nobody needed were still copied back.
	Busy bool
	// Frames is the WAL's length in frames (pages) before truncation, and
	// Checkpointed how many of them are now in the database file.
	Frames, Checkpointed int
	// Readers, when Busy, names the other processes holding a read lock
	// on the WAL ("pid N (command) uid U"), where the system tells.
	Readers []string
}

// Checkpoint copies both databases' WALs back into the database files and,
// where nothing else is using them, truncates them to zero bytes.
//
// Why TRUNCATE and not PASSIVE: SQLite's own automatic checkpoints are
// PASSIVE and never shrink the file, so a WAL that once grew (a big
// portfolio, a long-held reader) stays that size on disk for good, and the
// vault's WAL keeps copies of rotated-away refresh tokens until they happen
// to be overwritten. TRUNCATE leaves an empty WAL after every run.
//
// Why it cannot hurt a writer or a reader: TRUNCATE normally waits, with the
// busy handler, for writers and for readers of older snapshots, and blocks
// new writers while it waits. It runs here on a connection whose
// busy_timeout is 0, so instead of waiting it does what PASSIVE would (copy
// every frame no reader still needs) and reports Busy; the next run tries
// again. A reader who keeps a transaction open for hours pins the WAL for
// those hours: it grows with every run until the reader lets go, and the
// first checkpoint after that truncates it.
func (s *Store) Checkpoint(ctx context.Context) ([]WALCheckpoint, error) {
	var out []WALCheckpoint
	for _, d := range []struct {
		file string
		db   *database
	}{{SnapshotsFile, s.snapshots}, {TokensFile, s.tokens}} {
		c, err := checkpoint(ctx, d.db)
		if err != nil {
			return out, fileError(filepath.Join(s.dir, d.file), "checkpoint", err)
		}
		c.File = d.file
		if c.Busy {
			c.Readers = walReaders(s.dir, d.file)
		}
		out = append(out, c)
	}
	return out, nil
}

// checkpoint holds the write gate, so this process's own writers wait their
// turn instead of failing the checkpoint with Busy.
func checkpoint(ctx context.Context, db *database) (c WALCheckpoint, err error) {
	unlock, err := db.lockWrites(ctx)
	if err != nil {
		return c, err
	}
	defer unlock()
	conn, err := db.Conn(ctx)
	if err != nil {
		return c, err
	}
	defer conn.Close()
	var timeout int
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
		return c, err
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		return c, err
	}
	defer func() {
		// The connection goes back to the pool: it must wait for locks
		// again like every other, or a later write on it would fail at the
		// first contention. If that cannot be restored, drop it.
		_, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", timeout))
		if rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	// Free pages go back to the file system (in a database created with
	// auto_vacuum = INCREMENTAL; elsewhere this does nothing). Busy: the
	// next checkpoint does it.
	if _, err := conn.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil && !isBusy(err) {
		return c, err
	}
	var busy int
	err = conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &c.Frames, &c.Checkpointed)
	if isBusy(err) {
		// Not even the WAL index could be read without waiting: someone is
		// recovering or checkpointing right now. Not an error.
		return WALCheckpoint{Busy: true, Frames: -1, Checkpointed: -1}, nil
	}
	if err != nil {
		return c, err
	}
	c.Busy = busy != 0
	return c, nil
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}
