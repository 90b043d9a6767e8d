package pgstore

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/syncerhq/syncer/store"
)

// StartRun records the start of a run, with this instance's name, and
// returns its id.
func (s *Store) StartRun(ctx context.Context, trigger string) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO sync_run (trigger, started_at, status, pid, instance)
		VALUES ($1, $2, 'running', $3, $4) RETURNING id`, trigger, s.nowText(), os.Getpid(), s.instance).Scan(&id)
	if err != nil {
		return 0, dbError("record run", err, "")
	}
	return id, nil
}

// RecordResult records one connection's outcome in a run.
func (s *Store) RecordResult(ctx context.Context, runID, connID int64, status, errText string, started, finished time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sync_result (run_id, connection_id, status, error, started_at, finished_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (run_id, connection_id) DO UPDATE SET status = excluded.status, error = excluded.error,
		    finished_at = excluded.finished_at`,
		runID, connID, status, nullable(errText), started.UTC().Format(store.TimeFormat), finished.UTC().Format(store.TimeFormat))
	if err != nil {
		return dbError("record result", err, "")
	}
	return nil
}

// FinishRun records the end of a run.
func (s *Store) FinishRun(ctx context.Context, runID int64, status string, ok, failed int) error {
	_, err := s.pool.Exec(ctx, `UPDATE sync_run SET status = $1, finished_at = $2, connections_ok = $3,
		connections_failed = $4 WHERE id = $5`, status, s.nowText(), ok, failed, runID)
	if err != nil {
		return dbError("record run", err, "")
	}
	return nil
}

// RecordRunAttention records how many connections of a run were not
// attempted because they need re-login, and how many have a refresh token
// dying soon.
func (s *Store) RecordRunAttention(ctx context.Context, runID int64, skipped, warned int) error {
	_, err := s.pool.Exec(ctx, `UPDATE sync_run SET connections_skipped = $1, connections_warned = $2 WHERE id = $3`,
		skipped, warned, runID)
	if err != nil {
		return dbError("record run", err, "")
	}
	return nil
}

// CloseAbandonedRuns marks as interrupted the runs left open by a stopped
// process of this host (its pid is gone). Runs of other hosts are theirs
// to close: only they can tell whether the process lives.
func (s *Store) CloseAbandonedRuns(ctx context.Context) (int, error) {
	host, _, _ := strings.Cut(s.instance, ":")
	rows, err := s.pool.Query(ctx, "SELECT id, coalesce(instance, '') FROM sync_run WHERE finished_at IS NULL")
	if err != nil {
		return 0, dbError("read runs", err, "")
	}
	var abandoned []int64
	for rows.Next() {
		var id int64
		var inst string
		if err := rows.Scan(&id, &inst); err != nil {
			rows.Close()
			return 0, dbError("read runs", err, "")
		}
		h, p, ok := strings.Cut(inst, ":")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || h != host || inst == s.instance {
			continue
		}
		if !processAlive(pid) {
			abandoned = append(abandoned, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, dbError("read runs", err, "")
	}
	for _, id := range abandoned {
		_, err := s.pool.Exec(ctx, `UPDATE sync_run SET status = 'interrupted',
			finished_at = coalesce((SELECT max(finished_at) FROM sync_result WHERE run_id = $1), started_at)
			WHERE id = $1 AND finished_at IS NULL`, id)
		if err != nil {
			return 0, dbError("close run", err, "")
		}
	}
	return len(abandoned), nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LastRun returns the newest run's id and status.
func (s *Store) LastRun(ctx context.Context) (id int64, status string, err error) {
	err = s.pool.QueryRow(ctx, "SELECT id, status FROM sync_run ORDER BY id DESC LIMIT 1").Scan(&id, &status)
	return id, status, err
}
