package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/secret"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/seal"
)

// ErrStaleToken is wrapped by SaveToken's error when another instance saved
// newer tokens for the connection since this one read them: the save is
// dropped, the stored tokens stay.
var ErrStaleToken = errors.New("another syncer instance saved newer tokens for this connection meanwhile")

// Token returns a connection's stored tokens, and remembers their
// generation for the compare-and-swap of the next SaveToken.
func (s *Store) Token(ctx context.Context, connID int64) (store.StoredToken, error) {
	var (
		refresh               string
		access                *string
		accessExp, refreshExp *string
		generation            int64
		baseURL               string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT refresh_token, access_token, access_expires_at, refresh_expires_at, generation, base_url
		FROM vault.token WHERE connection_id = $1`, connID).Scan(&refresh, &access, &accessExp, &refreshExp, &generation, &baseURL)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.StoredToken{}, store.ErrNoToken
	}
	if err != nil {
		return store.StoredToken{}, dbError("read tokens", err, "")
	}
	refresh, err = openToken(s.cipher, connID, "refresh_token", baseURL, refresh)
	if err != nil {
		return store.StoredToken{}, err
	}
	var accessPlain string
	if access != nil {
		if accessPlain, err = openToken(s.cipher, connID, "access_token", baseURL, *access); err != nil {
			return store.StoredToken{}, err
		}
	}
	s.setGeneration(connID, generation)
	return store.StoredToken{
		Token: secret.Token{
			Access:           secret.Secret(accessPlain),
			Refresh:          secret.Secret(refresh),
			AccessExpiresAt:  parseTime(accessExp),
			RefreshExpiresAt: parseTime(refreshExp),
		},
		Generation: generation,
		BaseURL:    baseURL,
	}, nil
}

func (s *Store) setGeneration(connID, gen int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.generation[connID] = gen
}

// SaveToken stores a connection's tokens and mirrors their expiry times
// into the connection row, in one transaction committed with
// synchronous_commit on (whatever the server's default): once it returns,
// the tokens survive a crash of the server.
//
// It is a compare-and-swap: the save succeeds only while the stored
// tokens are the generation this process last read (Token) or wrote. If
// another instance saved since (its lease outlived ours, or a person
// re-connected), the newer tokens stay and the error wraps ErrStaleToken.
func (s *Store) SaveToken(ctx context.Context, connID int64, tok secret.Token) error {
	if tok.Refresh.IsZero() {
		return errors.New("pgstore: refusing to save a token set without a refresh token")
	}
	s.mu.Lock()
	expect, known := s.generation[connID]
	s.mu.Unlock()
	if !known {
		expect = -1
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return dbError("save tokens", err, "")
	}
	defer tx.Rollback(ctx)
	// A refresh goes to the provider that issued the tokens: the base URL
	// stored with them stays.
	gen, err := s.writeToken(ctx, tx, connID, "", tok, expect)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE connection SET access_expires_at = $1, refresh_expires_at = $2, updated_at = $3
		WHERE id = $4`, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt), s.nowText(), connID); err != nil {
		return dbError("save tokens", err, "")
	}
	if err := commitDurably(ctx, tx); err != nil {
		return dbError("save tokens", err, "")
	}
	s.setGeneration(connID, gen)
	return nil
}

// writeToken upserts the tokens, issued by baseURL ("" keeps the base URL
// stored with them), inside tx. expect >= 0 makes it a compare-and-swap on
// the generation; -1 overwrites. It returns the new generation.
func (s *Store) writeToken(ctx context.Context, tx pgx.Tx, connID int64, baseURL string, tok secret.Token, expect int64) (int64, error) {
	if err := s.checkKeyUnchanged(ctx, tx); err != nil {
		return 0, err
	}
	if baseURL == "" {
		err := tx.QueryRow(ctx, "SELECT base_url FROM vault.token WHERE connection_id = $1", connID).Scan(&baseURL)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, dbError("save tokens", err, "")
		}
	}
	refresh, err := s.cipher.Seal(connID, "refresh_token", baseURL, tok.Refresh.Reveal())
	if err != nil {
		return 0, err
	}
	var access *string
	if !tok.Access.IsZero() {
		a, err := s.cipher.Seal(connID, "access_token", baseURL, tok.Access.Reveal())
		if err != nil {
			return 0, err
		}
		access = &a
	}
	var gen int64
	err = tx.QueryRow(ctx, `
		INSERT INTO vault.token (connection_id, refresh_token, access_token, access_expires_at,
		                         refresh_expires_at, generation, updated_at, updated_by, base_url)
		VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $9)
		ON CONFLICT (connection_id) DO UPDATE SET
		    refresh_token = excluded.refresh_token,
		    access_token = excluded.access_token,
		    access_expires_at = excluded.access_expires_at,
		    refresh_expires_at = excluded.refresh_expires_at,
		    generation = vault.token.generation + 1,
		    updated_at = excluded.updated_at,
		    updated_by = excluded.updated_by,
		    base_url = excluded.base_url
		WHERE $8::bigint < 0 OR vault.token.generation = $8::bigint
		RETURNING generation`,
		connID, refresh, access, formatTime(tok.AccessExpiresAt), formatTime(tok.RefreshExpiresAt),
		s.nowText(), s.instance, expect, baseURL).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("pgstore: save tokens of connection %d: %w; the newer ones stay", connID, ErrStaleToken)
	}
	if err != nil {
		return 0, dbError("save tokens", err, "")
	}
	return gen, nil
}

// commitDurably commits with synchronous_commit on for this transaction: a
// rotated refresh token must not be lost to a server crash after the
// commit returned, even where the server's default is off.
func commitDurably(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO on"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// CheckWritable makes one small write to the vault: the sync loop calls it
// before a refresh, whose rotated token must be saved, so a server that
// takes no writes (read-only, a standby, out of disk, gone) fails the
// connection before the provider is asked. One row per host, committed
// without waiting for the flush: instances do not queue behind each other
// here, and the token's own save is the durable one.
func (s *Store) CheckWritable(ctx context.Context) error {
	host, _, _ := strings.Cut(s.instance, ":")
	tx, err := s.begin(ctx)
	if err != nil {
		return dbError("write check", err, "")
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO off"); err != nil {
		return dbError("write check", err, "")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO vault.meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, "write_check:"+host, s.nowText()); err != nil {
		return dbError("write check", err, "")
	}
	if err := tx.Commit(ctx); err != nil {
		return dbError("write check", err, "")
	}
	return nil
}

// Tokens are sealed by package seal (the format of package store too, so
// `syncer copy` moves sealed values as they are); a nil *seal.Cipher stores
// plain text.
const keyCheckPlain = seal.KeyCheck

func newTokenCipher(key []byte) (*seal.Cipher, error) {
	c, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
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
		return "", configError(KeyMissing, "the vault holds encrypted tokens but no token key is configured")
	case errors.Is(err, seal.ErrWrongKey):
		return "", fmt.Errorf("pgstore: %s of connection %d does not open with the configured token key (or its base_url in vault.token was changed)", column, connID)
	}
	return "", fmt.Errorf("pgstore: %w", err)
}

// checkKey checks the configured key (or its absence) against the vault's
// key check, writing one on first use. A vault with tokens stored under
// another choice (sealed without a key, plain with one) is refused; moving
// between them is `syncer copy`'s or a re-connect's job, not a side effect
// of starting.
func (s *Store) checkKey(ctx context.Context) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return dbError("check token key", err, "")
	}
	defer tx.Rollback(ctx)
	// Serialize with another instance doing the same at first start.
	if _, err := tx.Exec(ctx, "LOCK TABLE vault.meta IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return dbError("check token key", err, "")
	}
	var check *string
	err = tx.QueryRow(ctx, "SELECT value FROM vault.meta WHERE key = 'key_check'").Scan(&check)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return dbError("check token key", err, "")
	}
	switch {
	case check != nil && *check == "plaintext":
		if s.cipher != nil {
			return configError(KeyNotWanted, "the database's tokens are stored unsealed, by choice, and this instance has a token key")
		}
		return nil
	case check != nil:
		if s.cipher == nil {
			return configError(KeyMissing, "the database's tokens are sealed with a key, and this instance has none")
		}
		if _, err := openToken(s.cipher, 0, "key_check", "", *check); err != nil {
			return configError(WrongKey, "the token key is not the key the database's tokens were sealed with")
		}
		// Values sealed before the base URL was in their additional data
		// (gcm1) are re-sealed now, once, by whichever instance starts
		// first: the table lock above keeps the others waiting.
		if err := reseal(ctx, tx, s.cipher, s.cipher, true); err != nil {
			return err
		}
		return commitDurably(ctx, tx)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM vault.token").Scan(&n); err != nil {
		return dbError("check token key", err, "")
	}
	if n > 0 {
		return fmt.Errorf("pgstore: the vault holds %d token rows but no key check: it was not written by syncer; refusing to guess", n)
	}
	value := "plaintext"
	if s.cipher != nil {
		if value, err = s.cipher.Seal(0, "key_check", "", keyCheckPlain); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO vault.meta (key, value) VALUES ('key_check', $1)", value); err != nil {
		return dbError("check token key", err, "")
	}
	return tx.Commit(ctx)
}

// checkKeyUnchanged fails when the vault's key was changed (syncer rekey)
// since this process started: sealing with the old key now would leave
// tokens no instance can open. It share-locks the key check row, so a
// rekey under way finishes first (and is then seen) or waits for this
// save's commit (and then re-seals what it wrote).
func (s *Store) checkKeyUnchanged(ctx context.Context, tx pgx.Tx) error {
	var check *string
	err := tx.QueryRow(ctx, "SELECT value FROM vault.meta WHERE key = 'key_check' FOR SHARE").Scan(&check)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return dbError("check token key", err, "")
	}
	ok := check == nil // no check yet: a store being set up (copy, tests)
	switch {
	case check != nil && *check == "plaintext":
		ok = s.cipher == nil
	case check != nil && s.cipher != nil:
		_, err := openToken(s.cipher, 0, "key_check", "", *check)
		ok = err == nil
	}
	if !ok {
		return configError(KeyChanged, "the database's token key was changed since this syncer started")
	}
	return nil
}

// reseal opens stored tokens with from and seals them again with to (nil:
// plain text), inside tx. onlyV1 limits it to values sealed as gcm1. The
// generation is kept: the tokens are the same, and a compare-and-swap
// save of another instance still succeeds (its row lock waits for tx).
func reseal(ctx context.Context, tx pgx.Tx, from, to *seal.Cipher, onlyV1 bool) error {
	q := "SELECT connection_id, refresh_token, coalesce(access_token, ''), base_url FROM vault.token"
	if onlyV1 {
		q += " WHERE refresh_token LIKE 'gcm1:%' OR access_token LIKE 'gcm1:%'"
	}
	rows, err := tx.Query(ctx, q+" ORDER BY connection_id FOR UPDATE")
	if err != nil {
		return dbError("re-seal tokens", err, "")
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
			return dbError("re-seal tokens", err, "")
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return dbError("re-seal tokens", err, "")
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
		if _, err := tx.Exec(ctx, "UPDATE vault.token SET refresh_token = $1, access_token = nullif($2, '') WHERE connection_id = $3",
			refresh, access, r.id); err != nil {
			return dbError("re-seal tokens", err, "")
		}
	}
	return nil
}

// Rekey re-seals every stored token with newKey, in one transaction, and
// makes it the vault's key: the old key is never needed again. A nil newKey
// stores the tokens unsealed (then every instance needs
// SYNCER_DATABASE_PLAINTEXT_TOKENS=true); on an unsealed vault a key turns
// sealing on. It returns how many connections' tokens it re-sealed. Other
// instances still holding the old key refuse to save tokens from then on
// (their syncs fail, the refreshed token kept in memory) until restarted
// with the new key.
func (s *Store) Rekey(ctx context.Context, newKey []byte) (int, error) {
	var to *seal.Cipher
	if newKey != nil {
		c, err := newTokenCipher(newKey)
		if err != nil {
			return 0, err
		}
		to = c
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, dbError("re-key", err, "")
	}
	defer tx.Rollback(ctx)
	// The key check row first, exclusively: saves share-lock it
	// (checkKeyUnchanged), so none is half-way with the old key while the
	// tokens are re-sealed, and every later one sees the new check.
	if _, err := tx.Exec(ctx, "SELECT value FROM vault.meta WHERE key = 'key_check' FOR UPDATE"); err != nil {
		return 0, dbError("re-key", err, "")
	}
	if err := s.checkKeyUnchanged(ctx, tx); err != nil {
		return 0, err
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM vault.token").Scan(&n); err != nil {
		return 0, dbError("re-key", err, "")
	}
	if err := reseal(ctx, tx, s.cipher, to, false); err != nil {
		return 0, fmt.Errorf("pgstore: re-key: %w (nothing was changed)", err)
	}
	value := "plaintext"
	if to != nil {
		if value, err = to.Seal(0, "key_check", "", keyCheckPlain); err != nil {
			return 0, err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO vault.meta (key, value) VALUES ('key_check', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, value); err != nil {
		return 0, dbError("re-key", err, "")
	}
	if err := commitDurably(ctx, tx); err != nil {
		return 0, dbError("re-key", err, "")
	}
	s.cipher = to
	return n, nil
}
