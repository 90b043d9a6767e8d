package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/secret"
	"github.com/syncerhq/syncer/store"
)

const connectionColumns = `id, name, provider, base_url, state, access_expires_at,
	refresh_expires_at, last_success_at, coalesce(last_error, ''), created_at, state_since`

func scanConnection(row pgx.Row) (store.Connection, error) {
	var c store.Connection
	var accessExp, refreshExp, lastSuccess, created, since *string
	err := row.Scan(&c.ID, &c.Name, &c.Provider, &c.BaseURL, &c.State, &accessExp, &refreshExp,
		&lastSuccess, &c.LastError, &created, &since)
	c.StateSince = parseTime(since)
	c.AccessExpiresAt = parseTime(accessExp)
	c.RefreshExpiresAt = parseTime(refreshExp)
	c.LastSuccessAt = parseTime(lastSuccess)
	c.CreatedAt = parseTime(created)
	return c, err
}

// Connections lists every connection, by name.
func (s *Store) Connections(ctx context.Context) ([]store.Connection, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+connectionColumns+" FROM connection ORDER BY name")
	if err != nil {
		return nil, dbError("read connections", err, "")
	}
	defer rows.Close()
	var out []store.Connection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, dbError("read connections", err, "")
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read connections", err, "")
	}
	return out, nil
}

// ConnectionByName returns the named connection, or an error wrapping
// store.ErrNotFound.
func (s *Store) ConnectionByName(ctx context.Context, name string) (store.Connection, error) {
	c, err := scanConnection(s.pool.QueryRow(ctx, "SELECT "+connectionColumns+" FROM connection WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Connection{}, fmt.Errorf("connection %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.Connection{}, dbError("read connection", err, "")
	}
	return c, nil
}

// Connect creates the named connection, or re-connects an existing one of
// the same provider (state back to active, error cleared, history kept),
// and stores its fresh tokens: one transaction, so a connection never
// exists without its tokens nor a re-connect half-done.
func (s *Store) Connect(ctx context.Context, name, providerName, baseURL string, tok secret.Token) (store.Connection, error) {
	if tok.Refresh.IsZero() {
		return store.Connection{}, errors.New("pgstore: refusing to save a token set without a refresh token")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return store.Connection{}, dbError("connect", err, "")
	}
	defer tx.Rollback(ctx)
	var existing string
	err = tx.QueryRow(ctx, "SELECT provider FROM connection WHERE name = $1 FOR UPDATE", name).Scan(&existing)
	switch {
	case err == nil && existing != providerName:
		return store.Connection{}, fmt.Errorf("connection %q already exists for %s; choose another name", name, existing)
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return store.Connection{}, dbError("connect", err, "")
	}
	now := s.nowText()
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO connection (name, provider, base_url, state, access_expires_at, refresh_expires_at,
		                        last_error, created_at, updated_at, state_since)
		VALUES ($1, $2, $3, 'active', $4, $5, NULL, $6, $6, $6)
		ON CONFLICT (name) DO UPDATE SET
		    state_since = CASE WHEN connection.state = 'active' THEN connection.state_since ELSE excluded.state_since END,
		    base_url = excluded.base_url, state = 'active', last_error = NULL,
		    access_expires_at = excluded.access_expires_at,
		    refresh_expires_at = excluded.refresh_expires_at,
		    updated_at = excluded.updated_at
		RETURNING id`,
		name, providerName, baseURL, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt), now).Scan(&id)
	if err != nil {
		return store.Connection{}, dbError("connect", err, "")
	}
	if _, err := tx.Exec(ctx, "INSERT INTO connection_lease (connection_id) VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
		return store.Connection{}, dbError("connect", err, "")
	}
	// A re-connect wins over whatever is stored: no generation check. The
	// tokens are bound to the base URL they were issued by.
	gen, err := s.writeToken(ctx, tx, id, baseURL, tok, -1)
	if err != nil {
		return store.Connection{}, err
	}
	if err := commitDurably(ctx, tx); err != nil {
		return store.Connection{}, dbError("connect", err, "")
	}
	s.setGeneration(id, gen)
	return s.ConnectionByName(ctx, name)
}

// SetState records a connection's state and last error ("" clears it);
// state_since moves only when the state changes.
func (s *Store) SetState(ctx context.Context, connID int64, state, lastError string) error {
	_, err := s.pool.Exec(ctx, `UPDATE connection SET
		    state_since = CASE WHEN state = $1 THEN state_since ELSE $3 END,
		    state = $1, last_error = $2, updated_at = $3 WHERE id = $4`,
		state, nullable(lastError), s.nowText(), connID)
	if err != nil {
		return dbError("record state", err, "")
	}
	return nil
}

// Disconnect deletes the connection's tokens and marks it disconnected, in
// one transaction. Its snapshots stay.
func (s *Store) Disconnect(ctx context.Context, connID int64) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return dbError("disconnect", err, "")
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "DELETE FROM vault.token WHERE connection_id = $1", connID); err != nil {
		return dbError("disconnect", err, "")
	}
	if _, err := tx.Exec(ctx, `UPDATE connection SET state = 'disconnected', access_expires_at = NULL,
		state_since = CASE WHEN state = 'disconnected' THEN state_since ELSE $1 END,
		refresh_expires_at = NULL, updated_at = $1 WHERE id = $2`, s.nowText(), connID); err != nil {
		return dbError("disconnect", err, "")
	}
	if err := commitDurably(ctx, tx); err != nil {
		return dbError("disconnect", err, "")
	}
	s.mu.Lock()
	delete(s.generation, connID)
	s.mu.Unlock()
	return nil
}
