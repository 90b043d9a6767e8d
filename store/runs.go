package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Run statuses.
const (
	RunRunning     = "running"
	RunOK          = "ok"
	RunPartial     = "partial"
	RunFailed      = "failed"
	RunInterrupted = "interrupted"
)

// Result statuses, per connection in a run.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// StartRun records the start of a run and returns its id.
func (s *Store) StartRun(ctx context.Context, trigger string) (int64, error) {
	unlock, err := s.snapshots.lockWrites(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	var id int64
	err = s.snapshots.QueryRowContext(ctx, `INSERT INTO sync_run (trigger, started_at, status, pid)
		VALUES (?, ?, 'running', ?) RETURNING id`, trigger, s.now().Format(TimeFormat), os.Getpid()).Scan(&id)
	if err != nil {
		return 0, fileError(filepath.Join(s.dir, SnapshotsFile), "record run in", err)
	}
	return id, nil
}

// RecordResult records one connection's outcome in a run.
func (s *Store) RecordResult(ctx context.Context, runID, connID int64, status, errText string, started, finished time.Time) error {
	_, err := s.snapshots.exec(ctx, `INSERT INTO sync_result (run_id, connection_id, status, error, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, connection_id) DO UPDATE SET status = excluded.status, error = excluded.error,
		    finished_at = excluded.finished_at`,
		runID, connID, status, nullable(errText), started.UTC().Format(TimeFormat), finished.UTC().Format(TimeFormat))
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "record result in", err)
	}
	return nil
}

// FinishRun records the end of a run.
func (s *Store) FinishRun(ctx context.Context, runID int64, status string, ok, failed int) error {
	_, err := s.snapshots.exec(ctx, `UPDATE sync_run SET status = ?, finished_at = ?, connections_ok = ?,
		connections_failed = ? WHERE id = ?`, status, s.now().Format(TimeFormat), ok, failed, runID)
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "record run in", err)
	}
	return nil
}

// RecordRunAttention records how many connections of a run were not
// attempted because they need re-login, and how many have a refresh token
// dying soon.
func (s *Store) RecordRunAttention(ctx context.Context, runID int64, skipped, warned int) error {
	_, err := s.snapshots.exec(ctx, `UPDATE sync_run SET connections_skipped = ?, connections_warned = ? WHERE id = ?`,
		skipped, warned, runID)
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "record run in", err)
	}
	return nil
}

// CloseAbandonedRuns marks as interrupted the runs a crashed process left
// open (no finished_at, and their process is gone), so no run looks like it
// is still going. It returns how many it closed.
func (s *Store) CloseAbandonedRuns(ctx context.Context) (int, error) {
	rows, err := s.snapshots.QueryContext(ctx, "SELECT id, coalesce(pid, 0) FROM sync_run WHERE finished_at IS NULL")
	if err != nil {
		return 0, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
	}
	var abandoned []int64
	for rows.Next() {
		var id, pid int64
		if err := rows.Scan(&id, &pid); err != nil {
			rows.Close()
			return 0, err
		}
		if !processAlive(int(pid)) {
			abandoned = append(abandoned, id)
		}
	}
	rows.Close()
	for _, id := range abandoned {
		_, err := s.snapshots.exec(ctx, `UPDATE sync_run SET status = 'interrupted',
			finished_at = coalesce((SELECT max(finished_at) FROM sync_result WHERE run_id = ?), started_at)
			WHERE id = ? AND finished_at IS NULL`, id, id)
		if err != nil {
			return 0, fileError(filepath.Join(s.dir, SnapshotsFile), "write", err)
		}
	}
	return len(abandoned), nil
}

// processAlive reports whether a process with that pid exists. Our own pid
// counts as alive (a run of this process is never abandoned), a pid of 0 as
// dead. A reused pid can make a dead run look alive until that process ends;
// that errs on the side of leaving a run open, never of closing a live one.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LastRun returns the newest run's id and status, or sql.ErrNoRows.
func (s *Store) LastRun(ctx context.Context) (id int64, status string, err error) {
	err = s.snapshots.QueryRowContext(ctx, "SELECT id, status FROM sync_run ORDER BY id DESC LIMIT 1").Scan(&id, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", err
	}
	return id, status, err
}
