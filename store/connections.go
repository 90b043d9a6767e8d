package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/syncerhq/syncer/secret"
)

// Connection states.
const (
	StateActive         = "active"
	StateReauthRequired = "reauth_required"
	StateDisconnected   = "disconnected"
)

// Connection is one account at one provider. It holds no secret.
type Connection struct {
	ID               int64
	Name             string
	Provider         string
	BaseURL          string
	State            string
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
	LastSuccessAt    time.Time
	LastError        string
	CreatedAt        time.Time
	// StateSince is when State last changed; zero when not known (a
	// connection older than schema 3 that has stayed active).
	StateSince time.Time
}

const connectionColumns = `id, name, provider, base_url, state, access_expires_at,
	refresh_expires_at, last_success_at, coalesce(last_error, ''), created_at, state_since`

func scanConnection(sc interface{ Scan(...any) error }) (Connection, error) {
	var c Connection
	var accessExp, refreshExp, lastSuccess, created, since sql.NullString
	err := sc.Scan(&c.ID, &c.Name, &c.Provider, &c.BaseURL, &c.State, &accessExp, &refreshExp,
		&lastSuccess, &c.LastError, &created, &since)
	c.StateSince = parseTime(since)
	c.AccessExpiresAt = parseTime(accessExp)
	c.RefreshExpiresAt = parseTime(refreshExp)
	c.LastSuccessAt = parseTime(lastSuccess)
	c.CreatedAt = parseTime(created)
	return c, err
}

// Connections lists every connection, by name.
func (s *Store) Connections(ctx context.Context) ([]Connection, error) {
	rows, err := s.snapshots.QueryContext(ctx, "SELECT "+connectionColumns+" FROM connection ORDER BY name")
	if err != nil {
		return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
	}
	defer rows.Close()
	var out []Connection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ConnectionByName returns the named connection, or an error wrapping
// ErrNotFound.
func (s *Store) ConnectionByName(ctx context.Context, name string) (Connection, error) {
	row := s.snapshots.QueryRowContext(ctx, "SELECT "+connectionColumns+" FROM connection WHERE name = ?", name)
	c, err := scanConnection(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Connection{}, fmt.Errorf("connection %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Connection{}, fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
	}
	return c, nil
}

// Connect creates the named connection, or re-connects an existing one of
// the same provider (state back to active, error cleared, history kept), and
// stores its fresh tokens.
func (s *Store) Connect(ctx context.Context, name, providerName, baseURL string, tok secret.Token) (Connection, error) {
	path := filepath.Join(s.dir, SnapshotsFile)
	tx, err := s.snapshots.begin(ctx)
	if err != nil {
		return Connection{}, fileError(path, "write", err)
	}
	defer tx.Rollback()
	var existing string
	err = tx.QueryRowContext(ctx, "SELECT provider FROM connection WHERE name = ?", name).Scan(&existing)
	switch {
	case err == nil && existing != providerName:
		// Disconnecting keeps the row (and its history), so the name stays
		// taken: only another name helps.
		return Connection{}, fmt.Errorf("connection %q already exists for %s; choose another name", name, existing)
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return Connection{}, fileError(path, "read", err)
	}
	now := s.now().Format(TimeFormat)
	var id int64
	err = tx.QueryRowContext(ctx, `
		INSERT INTO connection (name, provider, base_url, state, access_expires_at, refresh_expires_at,
		                        last_error, created_at, updated_at, state_since)
		VALUES (?, ?, ?, 'active', ?, ?, NULL, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET
		    state_since = CASE WHEN state = 'active' THEN state_since ELSE excluded.state_since END,
		    base_url = excluded.base_url, state = 'active', last_error = NULL,
		    access_expires_at = excluded.access_expires_at,
		    refresh_expires_at = excluded.refresh_expires_at,
		    updated_at = excluded.updated_at
		RETURNING id`,
		name, providerName, baseURL, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt), now, now, now).Scan(&id)
	if err != nil {
		return Connection{}, fileError(path, "write", err)
	}
	// The tokens are saved before the connection row commits: if they
	// cannot be saved, a re-connected connection keeps its old state
	// (reauth_required stays reauth_required, so its refused token is never
	// presented again) and a new one is not created without tokens.
	if err := s.saveVault(ctx, id, name, baseURL, tok); err != nil {
		return Connection{}, err
	}
	if err := tx.Commit(); err != nil {
		return Connection{}, fileError(path, "write", err)
	}
	return s.ConnectionByName(ctx, name)
}

// SetState records a connection's state and last error ("" clears it).
func (s *Store) SetState(ctx context.Context, connID int64, state, lastError string) error {
	var errText any
	if lastError != "" {
		errText = lastError
	}
	now := s.now().Format(TimeFormat)
	_, err := s.snapshots.exec(ctx, `UPDATE connection SET
		    state_since = CASE WHEN state = ?1 THEN state_since ELSE ?3 END,
		    state = ?1, last_error = ?2, updated_at = ?3 WHERE id = ?4`,
		state, errText, now, connID)
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "write", err)
	}
	return nil
}

// Disconnect deletes the connection's tokens and marks it disconnected. Its
// snapshots stay.
func (s *Store) Disconnect(ctx context.Context, connID int64) error {
	if err := s.DeleteToken(ctx, connID); err != nil {
		return err
	}
	_, err := s.snapshots.exec(ctx, `
		UPDATE connection SET state = 'disconnected', access_expires_at = NULL,
		       state_since = CASE WHEN state = 'disconnected' THEN state_since ELSE ?1 END,
		       refresh_expires_at = NULL, updated_at = ?1 WHERE id = ?2`,
		s.now().Format(TimeFormat), connID)
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "write", err)
	}
	return nil
}
