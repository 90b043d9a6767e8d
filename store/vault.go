package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/syncerhq/syncer/secret"
)

// vaultSchema is tokens.db. It lives here, not in schema.sql, because no
// reader of the reports may ever see it.
const vaultSchema = `
CREATE TABLE IF NOT EXISTS token (
    connection_id      INTEGER PRIMARY KEY, -- connection.id in snapshots.db
    connection_name    TEXT NOT NULL,
    refresh_token      TEXT NOT NULL,
    access_token       TEXT,
    access_expires_at  TEXT,
    refresh_expires_at TEXT,
    generation         INTEGER NOT NULL DEFAULT 1, -- +1 on every save
    updated_at         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vault_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
PRAGMA user_version = 1;
`

// ErrNoToken is returned for a connection with no stored tokens.
var ErrNoToken = errors.New("no tokens stored")

// StoredToken is a connection's tokens as the vault holds them.
type StoredToken struct {
	secret.Token
	// Generation rises by one on every save; the sync loop compares it to
	// notice that another process refreshed while it waited for the lock.
	Generation int64
}

func (s *Store) migrateVault(ctx context.Context) error {
	path := filepath.Join(s.dir, TokensFile)
	var version int
	if err := s.tokens.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fileError(path, "migrate", err)
	}
	if version > 1 {
		return fmt.Errorf("store: %s has schema version %d, newer than this syncer knows (1): run the newer syncer", path, version)
	}
	if version == 1 {
		return nil
	}
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(path, "migrate", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, vaultSchema); err != nil {
		return fileError(path, "migrate", err)
	}
	return tx.Commit()
}

// Token returns a connection's stored tokens.
func (s *Store) Token(ctx context.Context, connID int64) (StoredToken, error) {
	var (
		refresh, access       string
		accessExp, refreshExp sql.NullString
		accessNull            sql.NullString
		generation            int64
	)
	err := s.tokens.QueryRowContext(ctx, `
		SELECT refresh_token, access_token, access_expires_at, refresh_expires_at, generation
		FROM token WHERE connection_id = ?`, connID).Scan(&refresh, &accessNull, &accessExp, &refreshExp, &generation)
	if errors.Is(err, sql.ErrNoRows) {
		return StoredToken{}, ErrNoToken
	}
	if err != nil {
		return StoredToken{}, fileError(filepath.Join(s.dir, TokensFile), "read tokens from", err)
	}
	access = accessNull.String
	if refresh, err = s.cipher.open(connID, "refresh_token", refresh); err != nil {
		return StoredToken{}, err
	}
	if access, err = s.cipher.open(connID, "access_token", access); err != nil {
		return StoredToken{}, err
	}
	return StoredToken{
		Token: secret.Token{
			Access:           secret.Secret(access),
			Refresh:          secret.Secret(refresh),
			AccessExpiresAt:  parseTime(accessExp),
			RefreshExpiresAt: parseTime(refreshExp),
		},
		Generation: generation,
	}, nil
}

// SaveToken stores a connection's tokens durably (tokens.db runs with
// synchronous=FULL: once this returns, a power cut cannot lose them), then
// mirrors their expiry times, never the tokens, into snapshots.db for status
// and the connections view.
func (s *Store) SaveToken(ctx context.Context, connID int64, tok secret.Token) error {
	if tok.Refresh.IsZero() {
		return errors.New("store: refusing to save a token set without a refresh token")
	}
	var name string
	if err := s.snapshots.QueryRowContext(ctx, "SELECT name FROM connection WHERE id = ?", connID).Scan(&name); err != nil {
		return fmt.Errorf("store: connection %d: %w", connID, err)
	}
	if err := s.saveVault(ctx, connID, name, tok); err != nil {
		return err
	}
	return s.mirrorExpiry(ctx, connID, tok)
}

func (s *Store) saveVault(ctx context.Context, connID int64, name string, tok secret.Token) error {
	path := filepath.Join(s.dir, TokensFile)
	refresh, err := s.cipher.seal(connID, "refresh_token", tok.Refresh.Reveal())
	if err != nil {
		return err
	}
	var access any
	if !tok.Access.IsZero() {
		a, err := s.cipher.seal(connID, "access_token", tok.Access.Reveal())
		if err != nil {
			return err
		}
		access = a
	}
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(path, "save tokens to", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `
		INSERT INTO token (connection_id, connection_name, refresh_token, access_token,
		                   access_expires_at, refresh_expires_at, generation, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, 1, ?)
		ON CONFLICT (connection_id) DO UPDATE SET
		    connection_name = excluded.connection_name,
		    refresh_token = excluded.refresh_token,
		    access_token = excluded.access_token,
		    access_expires_at = excluded.access_expires_at,
		    refresh_expires_at = excluded.refresh_expires_at,
		    generation = token.generation + 1,
		    updated_at = excluded.updated_at`,
		connID, name, refresh, access, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt),
		s.now().Format(TimeFormat))
	if err != nil {
		return fileError(path, "save tokens to", err)
	}
	if err := tx.Commit(); err != nil {
		return fileError(path, "save tokens to", err)
	}
	return nil
}

func (s *Store) mirrorExpiry(ctx context.Context, connID int64, tok secret.Token) error {
	_, err := s.snapshots.exec(ctx, `
		UPDATE connection SET access_expires_at = ?, refresh_expires_at = ?, updated_at = ?
		WHERE id = ?`,
		formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt), s.now().Format(TimeFormat), connID)
	if err != nil {
		return fileError(filepath.Join(s.dir, SnapshotsFile), "update", err)
	}
	return nil
}

// DeleteToken removes a connection's tokens. Deleting none is not an error.
func (s *Store) DeleteToken(ctx context.Context, connID int64) error {
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(filepath.Join(s.dir, TokensFile), "delete tokens from", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM token WHERE connection_id = ?", connID); err != nil {
		return fileError(filepath.Join(s.dir, TokensFile), "delete tokens from", err)
	}
	return tx.Commit()
}

// ErrTokenKey marks the errors of a missing or wrong token key: a
// configuration to fix, not a fault of the files. It adds nothing to their
// text. ErrNoTokenKey, one kind of it, marks an encrypted vault opened
// without a key.
var (
	ErrTokenKey   error = tokenKeyError{}
	ErrNoTokenKey error = tokenKeyError{missing: true}
)

type tokenKeyError struct{ missing bool }

func (tokenKeyError) Error() string { return "" }

// Is makes every token key error an ErrTokenKey.
func (tokenKeyError) Is(target error) bool { return target == ErrTokenKey }

// tokenCipher seals token columns with AES-256-GCM. A nil *tokenCipher
// stores plain text (the vault file is still 0600).
type tokenCipher struct{ aead cipher.AEAD }

const sealedPrefix = "gcm1:"

// keyCheckPlain is sealed into vault_meta so a wrong key is caught at open,
// before any token is read or, worse, overwritten.
const keyCheckPlain = "syncer token key check"

func newTokenCipher(key []byte) (*tokenCipher, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: the token key must be 32 bytes (AES-256), got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &tokenCipher{aead: aead}, nil
}

// aad binds a sealed value to its row and column, so a value copied into
// another connection's row does not open.
func aad(connID int64, column string) []byte {
	return []byte(strconv.FormatInt(connID, 10) + "/" + column)
}

func (c *tokenCipher) seal(connID int64, column, plain string) (string, error) {
	if c == nil || plain == "" {
		return plain, nil
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := c.aead.Seal(nonce, nonce, []byte(plain), aad(connID, column))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

func (c *tokenCipher) open(connID int64, column, stored string) (string, error) {
	if !strings.HasPrefix(stored, sealedPrefix) {
		if c != nil && stored != "" {
			return "", fmt.Errorf("store: %s of connection %d is not encrypted although a token key is set", column, connID)
		}
		return stored, nil
	}
	if c == nil {
		return "", fmt.Errorf("store: tokens.db holds encrypted tokens but no key is configured%w", ErrNoTokenKey)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(stored, sealedPrefix))
	if err != nil || len(raw) < c.aead.NonceSize() {
		return "", fmt.Errorf("store: %s of connection %d is damaged", column, connID)
	}
	plain, err := c.aead.Open(nil, raw[:c.aead.NonceSize()], raw[c.aead.NonceSize():], aad(connID, column))
	if err != nil {
		return "", fmt.Errorf("store: %s of connection %d does not open with the configured token key", column, connID)
	}
	return string(plain), nil
}

// setTokenKey checks the configured key against the vault and, the first
// time a key is given, seals the tokens already stored in plain text.
func (s *Store) setTokenKey(ctx context.Context, key []byte) error {
	path := filepath.Join(s.dir, TokensFile)
	var check sql.NullString
	err := s.tokens.QueryRowContext(ctx, "SELECT value FROM vault_meta WHERE key = 'key_check'").Scan(&check)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fileError(path, "read", err)
	}
	if key == nil {
		if check.Valid {
			return fmt.Errorf("store: %s is encrypted but no key is configured%w", path, ErrNoTokenKey)
		}
		return nil
	}
	c, err := newTokenCipher(key)
	if err != nil {
		return err
	}
	if check.Valid {
		if _, err := c.open(0, "key_check", check.String); err != nil {
			return fmt.Errorf("store: the configured token key is not the key %s was encrypted with: use the original key file; a new key cannot read the stored tokens%w", path, ErrTokenKey)
		}
		s.cipher = c
		return nil
	}
	// First use of a key: seal what is stored, and the check value, at once.
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(path, "encrypt", err)
	}
	defer tx.Rollback()
	// Another process given the same new key may have sealed the vault
	// while this one waited for the write lock: check again under it, so
	// nothing is sealed twice.
	err = tx.QueryRowContext(ctx, "SELECT value FROM vault_meta WHERE key = 'key_check'").Scan(&check)
	switch {
	case err == nil:
		if _, err := c.open(0, "key_check", check.String); err != nil {
			return fmt.Errorf("store: the configured token key is not the key %s was encrypted with: use the original key file; a new key cannot read the stored tokens%w", path, ErrTokenKey)
		}
		s.cipher = c
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fileError(path, "encrypt", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT connection_id, refresh_token, coalesce(access_token, '') FROM token")
	if err != nil {
		return fileError(path, "encrypt", err)
	}
	type row struct {
		id              int64
		refresh, access string
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.refresh, &r.access); err != nil {
			rows.Close()
			return fileError(path, "encrypt", err)
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fileError(path, "encrypt", err)
	}
	for _, r := range all {
		refresh, err := c.seal(r.id, "refresh_token", r.refresh)
		if err != nil {
			return err
		}
		access, err := c.seal(r.id, "access_token", r.access)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE token SET refresh_token = ?, access_token = nullif(?, '') WHERE connection_id = ?", refresh, access, r.id); err != nil {
			return fileError(path, "encrypt", err)
		}
	}
	sealed, err := c.seal(0, "key_check", keyCheckPlain)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO vault_meta (key, value) VALUES ('key_check', ?)", sealed); err != nil {
		return fileError(path, "encrypt", err)
	}
	if err := tx.Commit(); err != nil {
		return fileError(path, "encrypt", err)
	}
	s.cipher = c
	return nil
}
