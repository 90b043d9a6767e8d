package pgstore

// What the operations work (issue 11) needs of a store, as package store
// has it for SQLite: notify state, consecutive failures, rows written, and
// the connections read without migrating or opening the vault (`syncer
// status`, `syncer notify`).

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/syncerhq/syncer/store"
)

// RowsWritten returns how many snapshot rows (a snapshot row and its
// companies or investments) this Store has committed since it was opened,
// by provider.
func (s *Store) RowsWritten() map[string]int64 { return s.rows.Counts() }

// NotifyStates returns every connection's notify state, by connection id.
func (s *Store) NotifyStates(ctx context.Context) (map[int64]store.NotifyState, error) {
	rows, err := s.pool.Query(ctx, "SELECT connection_id, condition, refresh_warned_for FROM notify_state")
	if err != nil {
		return nil, dbError("read notify state", err, "")
	}
	defer rows.Close()
	out := map[int64]store.NotifyState{}
	for rows.Next() {
		var id int64
		var st store.NotifyState
		var warned *string
		if err := rows.Scan(&id, &st.Condition, &warned); err != nil {
			return nil, dbError("read notify state", err, "")
		}
		st.RefreshWarnedFor = parseTime(warned)
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read notify state", err, "")
	}
	return out, nil
}

// SetNotifyState records what was announced about a connection.
func (s *Store) SetNotifyState(ctx context.Context, connID int64, st store.NotifyState) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO notify_state (connection_id, condition, refresh_warned_for, updated_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (connection_id) DO UPDATE SET condition = excluded.condition,
		    refresh_warned_for = excluded.refresh_warned_for, updated_at = excluded.updated_at`,
		connID, st.Condition, formatTime(st.RefreshWarnedFor), s.nowText())
	if err != nil {
		return dbError("record notify state", err, "")
	}
	return nil
}

// ConsecutiveFailures returns, by connection id, how many of its latest
// attempts failed in a row (results of skipped connections do not count,
// either way). Connections whose latest attempt succeeded are absent.
func (s *Store) ConsecutiveFailures(ctx context.Context) (map[int64]int, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.id, (SELECT count(*) FROM sync_result r
		              WHERE r.connection_id = c.id AND r.status = 'failed'
		                AND r.run_id > coalesce((SELECT max(o.run_id) FROM sync_result o
		                                         WHERE o.connection_id = c.id AND o.status = 'ok'), 0))
		FROM connection c`)
	if err != nil {
		return nil, dbError("read results", err, "")
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, dbError("read results", err, "")
		}
		if n > 0 {
			out[id] = int(n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read results", err, "")
	}
	return out, nil
}

// ReadConnections lists the connections read-only, as package store's
// ReadConnections does for snapshots.db: no migration, no vault, no key,
// so a monitoring user with the reporting role's URL can run `syncer
// status`. A database migrated before version 3 is read as it is
// (state_since unknown).
func ReadConnections(ctx context.Context, databaseURL string) ([]store.Connection, error) {
	db, err := OpenReader(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var hasSince bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'connections' AND column_name = 'state_since')`).Scan(&hasSince); err != nil {
		return nil, dbError("read connections", err, databaseURL)
	}
	since := "state_since"
	if !hasSince {
		since = "NULL::text"
	}
	// The connections view, not the table: the reporting role's grants
	// cover both, and the view is the stable surface.
	rows, err := db.QueryContext(ctx, `SELECT connection_id, name, provider, base_url, state, access_expires_at,
		refresh_expires_at, last_success_at, coalesce(last_error, ''), created_at, `+since+`
		FROM connections ORDER BY name`)
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "42P01" { // undefined_table
		return nil, &Error{Op: "read connections", Msg: "the database has no syncer schema yet: " + pe.Message, Problem: NoSchema, err: err}
	}
	if err != nil {
		return nil, dbError("read connections", err, databaseURL)
	}
	defer rows.Close()
	var out []store.Connection
	for rows.Next() {
		var c store.Connection
		var accessExp, refreshExp, lastSuccess, created, stateSince *string
		if err := rows.Scan(&c.ID, &c.Name, &c.Provider, &c.BaseURL, &c.State, &accessExp, &refreshExp,
			&lastSuccess, &c.LastError, &created, &stateSince); err != nil {
			return nil, dbError("read connections", err, databaseURL)
		}
		c.AccessExpiresAt = parseTime(accessExp)
		c.RefreshExpiresAt = parseTime(refreshExp)
		c.LastSuccessAt = parseTime(lastSuccess)
		c.CreatedAt = parseTime(created)
		c.StateSince = parseTime(stateSince)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read connections", err, databaseURL)
	}
	return out, nil
}
