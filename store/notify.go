package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"time"
)

// Notification conditions: what was last announced about a connection.
const (
	ConditionOK      = "ok"
	ConditionFailing = "failing"
	ConditionReauth  = StateReauthRequired
)

// NotifyState is what the notifications last announced about a connection.
// A connection without a row is announced as ok with no refresh warning.
type NotifyState struct {
	Condition string
	// RefreshWarnedFor is the refresh token expiry already warned about.
	RefreshWarnedFor time.Time
}

// NotifyStates returns every connection's notify state, by connection id.
func (s *Store) NotifyStates(ctx context.Context) (map[int64]NotifyState, error) {
	rows, err := s.snapshots.QueryContext(ctx, "SELECT connection_id, condition, refresh_warned_for FROM notify_state")
	if err != nil {
		return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
	}
	defer rows.Close()
	out := map[int64]NotifyState{}
	for rows.Next() {
		var id int64
		var st NotifyState
		var warned sql.NullString
		if err := rows.Scan(&id, &st.Condition, &warned); err != nil {
			return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
		}
		st.RefreshWarnedFor = parseTime(warned)
		out[id] = st
	}
	return out, rows.Err()
}

// SetNotifyState records what was announced about a connection.
func (s *Store) SetNotifyState(ctx context.Context, connID int64, st NotifyState) error {
	_, err := s.snapshots.exec(ctx, `INSERT INTO notify_state (connection_id, condition, refresh_warned_for, updated_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (connection_id) DO UPDATE SET condition = excluded.condition,
		    refresh_warned_for = excluded.refresh_warned_for, updated_at = excluded.updated_at`,
		connID, st.Condition, formatTime(st.RefreshWarnedFor), s.now().Format(TimeFormat))
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "write", err)
	}
	return nil
}

// ConsecutiveFailures returns, by connection id, how many of its latest
// attempts failed in a row (results of skipped connections do not count,
// either way). Connections whose latest attempt succeeded are absent.
func (s *Store) ConsecutiveFailures(ctx context.Context) (map[int64]int, error) {
	// Per connection, through sync_result_by_connection: the last success
	// is one seek, the failures after it one short range.
	rows, err := s.snapshots.QueryContext(ctx, `
		SELECT c.id, (SELECT count(*) FROM sync_result r
		              WHERE r.connection_id = c.id AND r.status = 'failed'
		                AND r.run_id > coalesce((SELECT max(o.run_id) FROM sync_result o
		                                         WHERE o.connection_id = c.id AND o.status = 'ok'), 0))
		FROM connection c`)
	if err != nil {
		return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
		}
		if n > 0 {
			out[id] = n
		}
	}
	return out, rows.Err()
}
