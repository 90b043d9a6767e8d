package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/syncerhq/syncer/secret"
	"github.com/syncerhq/syncer/store/seal"
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
    updated_at         TEXT NOT NULL,
    -- The provider base URL the tokens were issued by. A sync sends them
    -- only there, and only while connection.base_url in snapshots.db (a file
    -- the reporting group reads and its backups travel) says the same.
    base_url           TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS vault_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
`

// vaultVersion is tokens.db's schema version (PRAGMA user_version).
// 1: tokens. 2: base_url beside them, in the AEAD's additional data.
const vaultVersion = 2

// ErrNoToken is returned for a connection with no stored tokens.
var ErrNoToken = errors.New("no tokens stored")

// StoredToken is a connection's tokens as the vault holds them.
type StoredToken struct {
	secret.Token
	// Generation rises by one on every save; the sync loop compares it to
	// notice that another process refreshed while it waited for the lock.
	Generation int64
	// BaseURL is the provider URL the tokens were issued by, as tokens.db
	// holds it ("" if unknown): the only place they may be sent.
	BaseURL string
}

func (s *Store) migrateVault(ctx context.Context) error {
	path := filepath.Join(s.dir, TokensFile)
	var version int
	if err := s.tokens.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fileError(path, "migrate", err)
	}
	if version > vaultVersion {
		return fmt.Errorf("store: %s has schema version %d, newer than this syncer knows (%d): run the newer syncer", path, version, vaultVersion)
	}
	if version == vaultVersion {
		return nil
	}
	// Version 1 knew no base URL: each token takes its connection's
	// current one, once, here. From now on only a re-connect changes it.
	urls := map[int64]string{}
	if version == 1 {
		rows, err := s.snapshots.QueryContext(ctx, "SELECT id, base_url FROM connection")
		if err != nil {
			return fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
		}
		for rows.Next() {
			var id int64
			var u string
			if err := rows.Scan(&id, &u); err != nil {
				rows.Close()
				return fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
			}
			urls[id] = u
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fileError(filepath.Join(s.dir, SnapshotsFile), "read", err)
		}
	}
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(path, "migrate", err)
	}
	defer tx.Rollback()
	// Another process may have migrated while this one waited for the lock.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fileError(path, "migrate", err)
	}
	switch version {
	case vaultVersion:
		return nil
	case 0:
		if _, err := tx.ExecContext(ctx, vaultSchema); err != nil {
			return fileError(path, "migrate", err)
		}
	case 1:
		if _, err := tx.ExecContext(ctx, "ALTER TABLE token ADD COLUMN base_url TEXT NOT NULL DEFAULT ''"); err != nil {
			return fileError(path, "migrate", err)
		}
		for id, u := range urls {
			if _, err := tx.ExecContext(ctx, "UPDATE token SET base_url = ? WHERE connection_id = ?", u, id); err != nil {
				return fileError(path, "migrate", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", vaultVersion)); err != nil {
		return fileError(path, "migrate", err)
	}
	if err := tx.Commit(); err != nil {
		return fileError(path, "migrate", err)
	}
	return nil
}

// Token returns a connection's stored tokens.
func (s *Store) Token(ctx context.Context, connID int64) (StoredToken, error) {
	var (
		refresh, access       string
		accessExp, refreshExp sql.NullString
		accessNull            sql.NullString
		generation            int64
		baseURL               string
	)
	err := s.tokens.queryRow(ctx, `
		SELECT refresh_token, access_token, access_expires_at, refresh_expires_at, generation, base_url
		FROM token WHERE connection_id = ?`, connID).Scan(&refresh, &accessNull, &accessExp, &refreshExp, &generation, &baseURL)
	if errors.Is(err, sql.ErrNoRows) {
		return StoredToken{}, ErrNoToken
	}
	if err != nil {
		return StoredToken{}, fileError(filepath.Join(s.dir, TokensFile), "read tokens from", err)
	}
	access = accessNull.String
	if refresh, err = openToken(s.cipher, connID, "refresh_token", baseURL, refresh); err != nil {
		return StoredToken{}, err
	}
	if access, err = openToken(s.cipher, connID, "access_token", baseURL, access); err != nil {
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
		BaseURL:    baseURL,
	}, nil
}

// ErrExpiryNotMirrored is returned by SaveToken when the tokens are saved
// durably in tokens.db but their expiry times could not be copied into
// snapshots.db: the tokens are safe to use; status and the connections view
// show the old expiry until the next save.
var ErrExpiryNotMirrored = errors.New("tokens saved, but their expiry times were not copied to snapshots.db")

// SaveToken stores a connection's tokens durably (tokens.db runs with
// synchronous=FULL: once this returns, a power cut cannot lose them), then
// mirrors their expiry times, never the tokens, into snapshots.db for status
// and the connections view. The vault does not depend on snapshots.db: a
// rotated refresh token is saved even when the reporting file cannot be read
// or written (the error then wraps ErrExpiryNotMirrored).
func (s *Store) SaveToken(ctx context.Context, connID int64, tok secret.Token) error {
	if tok.Refresh.IsZero() {
		return errors.New("store: refusing to save a token set without a refresh token")
	}
	// The name is only a label in the vault; an existing row keeps its own
	// when snapshots.db cannot say.
	var name string
	_ = s.snapshots.queryRow(ctx, "SELECT name FROM connection WHERE id = ?", connID).Scan(&name)
	if err := s.saveVault(ctx, connID, name, "", tok); err != nil {
		return err
	}
	if err := s.mirrorExpiry(ctx, connID, tok); err != nil {
		return fmt.Errorf("%w: %w", ErrExpiryNotMirrored, err)
	}
	return nil
}

// saveVault stores a connection's tokens, issued by baseURL; "" keeps the
// base URL already stored (a refresh goes to the same provider).
func (s *Store) saveVault(ctx context.Context, connID int64, name, baseURL string, tok secret.Token) error {
	path := filepath.Join(s.dir, TokensFile)
	// Committed with the other tokens waiting (group): one sync of the
	// disk for all the connections refreshed meanwhile.
	err := s.tokens.group(ctx, func(ctx context.Context, _ *sql.Conn, tx *sql.Tx) error {
		if err := s.checkKeyUnchanged(ctx, tx); err != nil {
			return err
		}
		if baseURL == "" {
			err := s.tokens.txQueryRow(ctx, tx, "SELECT base_url FROM token WHERE connection_id = ?", connID).Scan(&baseURL)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fileError(path, "save tokens to", err)
			}
		}
		refresh, err := s.cipher.Seal(connID, "refresh_token", baseURL, tok.Refresh.Reveal())
		if err != nil {
			return err
		}
		var access any
		if !tok.Access.IsZero() {
			a, err := s.cipher.Seal(connID, "access_token", baseURL, tok.Access.Reveal())
			if err != nil {
				return err
			}
			access = a
		}
		_, err = s.tokens.txExec(ctx, tx, `
			INSERT INTO token (connection_id, connection_name, refresh_token, access_token,
			                   access_expires_at, refresh_expires_at, generation, updated_at, base_url)
			VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)
			ON CONFLICT (connection_id) DO UPDATE SET
			    connection_name = coalesce(nullif(excluded.connection_name, ''), token.connection_name),
			    refresh_token = excluded.refresh_token,
			    access_token = excluded.access_token,
			    access_expires_at = excluded.access_expires_at,
			    refresh_expires_at = excluded.refresh_expires_at,
			    generation = token.generation + 1,
			    updated_at = excluded.updated_at,
			    base_url = excluded.base_url`,
			connID, name, refresh, access, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt),
			s.now().Format(TimeFormat), baseURL)
		if err != nil {
			return fileError(path, "save tokens to", err)
		}
		return nil
	})
	// The batch's own failure (its commit) names the file too.
	if _, ok := errors.AsType[*FileError](err); err != nil && !ok && !errors.Is(err, ErrTokenKey) {
		err = fileError(path, "save tokens to", err)
	}
	return err
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

// Tokens are sealed by package seal (the one format of both stores); a nil
// *seal.Cipher stores plain text (the vault file is still 0600).

// keyCheckPlain is sealed into vault_meta so a wrong key is caught at open,
// before any token is read or, worse, overwritten.
const keyCheckPlain = seal.KeyCheck

func newTokenCipher(key []byte) (*seal.Cipher, error) {
	c, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return c, nil
}

// openToken opens a stored value, in this store's words for its errors.
func openToken(c *seal.Cipher, connID int64, column, baseURL, stored string) (string, error) {
	plain, err := c.Open(connID, column, baseURL, stored)
	switch {
	case err == nil:
		return plain, nil
	case errors.Is(err, seal.ErrNoKey):
		return "", fmt.Errorf("store: tokens.db holds encrypted tokens but no key is configured%w", ErrNoTokenKey)
	case errors.Is(err, seal.ErrWrongKey):
		return "", fmt.Errorf("store: %s of connection %d does not open with the configured token key (or its base_url in tokens.db was changed)", column, connID)
	}
	return "", fmt.Errorf("store: %w", err)
}

// setTokenKey checks the configured key against the vault and, the first
// time a key is given, seals the tokens already stored in plain text. Values
// sealed by an older version (gcm1) are re-sealed with the base URL in their
// additional data.
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
		if _, err := openToken(c, 0, "key_check", "", check.String); err != nil {
			return wrongKey(path)
		}
		s.cipher = c
		return s.upgradeSealed(ctx)
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
		if _, err := openToken(c, 0, "key_check", "", check.String); err != nil {
			return wrongKey(path)
		}
		s.cipher = c
		tx.Rollback()
		return s.upgradeSealed(ctx)
	case !errors.Is(err, sql.ErrNoRows):
		return fileError(path, "encrypt", err)
	}
	if err := reseal(ctx, tx, nil, c); err != nil {
		return fileError(path, "encrypt", err)
	}
	if err := setKeyCheck(ctx, tx, c); err != nil {
		return fileError(path, "encrypt", err)
	}
	if err := tx.Commit(); err != nil {
		return fileError(path, "encrypt", err)
	}
	s.cipher = c
	return nil
}

func wrongKey(path string) error {
	return fmt.Errorf("store: the configured token key is not the key %s was encrypted with: use the original key file; a new key cannot read the stored tokens (syncer rekey changes the key)%w", path, ErrTokenKey)
}

// setKeyCheck stores the key check value for c, or removes it (c nil).
func setKeyCheck(ctx context.Context, tx *writeTx, c *seal.Cipher) error {
	if c == nil {
		_, err := tx.ExecContext(ctx, "DELETE FROM vault_meta WHERE key = 'key_check'")
		return err
	}
	sealed, err := c.Seal(0, "key_check", "", keyCheckPlain)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO vault_meta (key, value) VALUES ('key_check', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, sealed)
	return err
}

// upgradeSealed re-seals, in one transaction, the values sealed before the
// base URL was part of their additional data.
func (s *Store) upgradeSealed(ctx context.Context) error {
	path := filepath.Join(s.dir, TokensFile)
	var n int
	err := s.tokens.QueryRowContext(ctx, "SELECT count(*) FROM token WHERE refresh_token LIKE 'gcm1:%' OR access_token LIKE 'gcm1:%'").Scan(&n)
	if err != nil {
		return fileError(path, "read", err)
	}
	if n == 0 {
		return nil
	}
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return fileError(path, "encrypt", err)
	}
	defer tx.Rollback()
	if err := reseal(ctx, tx, s.cipher, s.cipher); err != nil {
		return err
	}
	return tx.Commit()
}

// reseal opens every stored token with from and seals it again with to
// (nil: plain text), inside tx.
func reseal(ctx context.Context, tx *writeTx, from, to *seal.Cipher) error {
	rows, err := tx.QueryContext(ctx, "SELECT connection_id, refresh_token, coalesce(access_token, ''), base_url FROM token")
	if err != nil {
		return err
	}
	type row struct {
		id                       int64
		refresh, access, baseURL string
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.refresh, &r.access, &r.baseURL); err != nil {
			rows.Close()
			return err
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range all {
		refresh, err := openToken(from, r.id, "refresh_token", r.baseURL, r.refresh)
		if err != nil {
			return err
		}
		access, err := openToken(from, r.id, "access_token", r.baseURL, r.access)
		if err != nil {
			return err
		}
		if refresh, err = to.Seal(r.id, "refresh_token", r.baseURL, refresh); err != nil {
			return err
		}
		if access, err = to.Seal(r.id, "access_token", r.baseURL, access); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE token SET refresh_token = ?, access_token = nullif(?, '') WHERE connection_id = ?", refresh, access, r.id); err != nil {
			return err
		}
	}
	return nil
}

// checkKeyUnchanged fails when tokens.db's key was changed (syncer rekey)
// since this process opened it: sealing with the old key now would leave
// tokens no one can open.
func (s *Store) checkKeyUnchanged(ctx context.Context, tx *sql.Tx) error {
	var check sql.NullString
	err := s.tokens.txQueryRow(ctx, tx, "SELECT value FROM vault_meta WHERE key = 'key_check'").Scan(&check)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fileError(filepath.Join(s.dir, TokensFile), "read", err)
	}
	ok := !check.Valid && s.cipher == nil
	if check.Valid && s.cipher != nil {
		_, err := openToken(s.cipher, 0, "key_check", "", check.String)
		ok = err == nil
	}
	if !ok {
		return fmt.Errorf("store: the token key of %s was changed (syncer rekey) since this syncer started: restart it with the new key%w", filepath.Join(s.dir, TokensFile), ErrTokenKey)
	}
	return nil
}

// Rekey re-seals every stored token with newKey, in one transaction, and
// makes it the vault's key: the old key is never needed again. A nil newKey
// stores the tokens in plain text (the file stays 0600); on a plain vault a
// key turns encryption on. It returns how many connections' tokens it
// re-sealed. Other syncer processes still holding the old key refuse to
// save tokens from then on; restart them with the new key.
func (s *Store) Rekey(ctx context.Context, newKey []byte) (int, error) {
	path := filepath.Join(s.dir, TokensFile)
	var to *seal.Cipher
	if newKey != nil {
		c, err := newTokenCipher(newKey)
		if err != nil {
			return 0, err
		}
		to = c
	}
	tx, err := s.tokens.begin(ctx)
	if err != nil {
		return 0, fileError(path, "re-key", err)
	}
	defer tx.Rollback()
	if err := s.checkKeyUnchanged(ctx, tx.Tx); err != nil {
		return 0, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM token").Scan(&n); err != nil {
		return 0, fileError(path, "re-key", err)
	}
	if err := reseal(ctx, tx, s.cipher, to); err != nil {
		return 0, fmt.Errorf("store: re-key %s: %w (nothing was changed)", path, err)
	}
	if err := setKeyCheck(ctx, tx, to); err != nil {
		return 0, fileError(path, "re-key", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fileError(path, "re-key", err)
	}
	s.cipher = to
	// The old sealed pages leave the WAL now, not at some later checkpoint
	// (secure_delete overwrites them in the database file itself).
	_, _ = s.tokens.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return n, nil
}
