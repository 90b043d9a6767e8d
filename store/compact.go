package store

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	syncer "github.com/syncerhq/syncer"
)

// compactBatchRows bounds one transaction of the schema 5 migration: the
// snapshots compacted together hold about this many investment rows (a
// bigger snapshot goes alone), as retention's batches do.
const compactBatchRows = 5000

// compactTask is the store_pending row of the schema 5 migration.
const compactTask = "compact"

// compactHistory is the second half of the migration to schema 5, done
// after the schema change has committed: every EstateGuru snapshot written
// before keeps only the investment rows that differ from the snapshot after
// it, and its raw answer goes into pieces. The views answer the same before,
// during and after (a snapshot with all its rows is read as one with only
// the changed ones), so the work goes in small transactions, oldest snapshot
// first, with a progress line; interrupted, it carries on at the next open
// (store_pending says it is not done) and what was done stays done.
func (s *Store) compactHistory(ctx context.Context, log *slog.Logger) error {
	path := filepath.Join(s.dir, SnapshotsFile)
	var pending int
	if err := s.snapshots.QueryRowContext(ctx, "SELECT count(*) FROM store_pending WHERE task = ?", compactTask).Scan(&pending); err != nil {
		return fileError(path, "migrate", err)
	}
	if pending == 0 {
		return nil
	}
	type snap struct {
		connID      int64
		at          string
		investments int64
	}
	rows, err := s.snapshots.QueryContext(ctx, `SELECT connection_id, snapshot_at, investments
		FROM estateguru_snapshot ORDER BY connection_id, snapshot_at`)
	if err != nil {
		return fileError(path, "migrate", err)
	}
	var work []snap
	for rows.Next() {
		var w snap
		if err := rows.Scan(&w.connID, &w.at, &w.investments); err != nil {
			rows.Close()
			return fileError(path, "migrate", err)
		}
		work = append(work, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fileError(path, "migrate", err)
	}
	start, last := time.Now(), time.Now()
	if len(work) > 0 {
		log.Info("store: migrating snapshots.db to schema 5: keeping only what changed", "file", path,
			"snapshots", len(work), "schema", syncer.SchemaVersion)
	}
	for done := 0; done < len(work); {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, weight := 0, int64(0)
		for done+n < len(work) && (n == 0 || weight+work[done+n].investments <= compactBatchRows) {
			weight += work[done+n].investments
			n++
		}
		tx, err := s.snapshots.begin(ctx)
		if err != nil {
			return fileError(path, "migrate", err)
		}
		for _, w := range work[done : done+n] {
			// The snapshot after it is looked up again inside the
			// transaction: another process may have written one since.
			var prev, next snapshotRef
			prev, next, err = neighbours(ctx, s.snapshots.prepare(tx.Tx), w.connID, w.at)
			if err == nil && next.at != "" {
				err = compact(ctx, s.snapshots.prepare(tx.Tx), w.connID, w.at, next.at)
			}
			if err == nil {
				// Oldest first: the snapshot before is in pieces already.
				err = chunkSnapshot(ctx, s.snapshots.prepare(tx.Tx), w.connID, w.at, prev.at)
			}
			if err != nil {
				tx.Rollback()
				return fileError(path, "migrate", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fileError(path, "migrate", err)
		}
		done += n
		if time.Since(last) >= 2*time.Second || done == len(work) {
			log.Info("store: migrating snapshots.db to schema 5", "snapshots_done", done, "snapshots", len(work),
				"elapsed", time.Since(start).Round(time.Millisecond).String())
			last = time.Now()
		}
	}
	if _, err := s.snapshots.exec(ctx, "DELETE FROM store_pending WHERE task = ?", compactTask); err != nil {
		return fileError(path, "migrate", err)
	}
	return nil
}
