// Package pgstore keeps syncer's data in PostgreSQL instead of the two
// SQLite files of package store: the same tables and reporting views (in
// schema public), the tokens in their own schema (vault), and what several
// syncer instances sharing one database need to take turns: a lease per
// connection (lease.go) and a compare-and-swap on every token save.
//
// It satisfies what sync needs of a store (sync.Store, and sync.Claimer) and
// what the commands need (connect, import, status, disconnect, query, rekey,
// and the metrics and notifications after every run: monitoring.go).
//
// The driver is jackc/pgx/v5 through its own pool (pgxpool), not
// database/sql: COPY for the investments of a portfolio, one transaction
// type with context cancellation, and no reflection over 13 arguments a
// row. `syncer query` reads through pgx's database/sql adapter on the same
// pool, to share the command's row writers with SQLite.
package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/seal"
)

//go:embed migrations/*.sql
var migrations embed.FS

// SchemaVersion is the newest migration this binary carries; a database
// whose schema_migrations says more was migrated by a newer syncer and is
// refused.
var SchemaVersion = mustVersions()[len(mustVersions())-1].version

// Options tune Open.
type Options struct {
	// TokenKey is a 32-byte AES-256 key sealing the token columns. It is
	// required unless PlaintextTokens is set.
	TokenKey []byte
	// PlaintextTokens stores tokens unsealed (the operator's explicit
	// choice: SYNCER_DATABASE_PLAINTEXT_TOKENS).
	PlaintextTokens bool
	// Instance names this process in leases and sync_runs (default
	// hostname:pid).
	Instance string
	// Lease is how long a connection's turn is held without renewal
	// (default 1m): an instance dying mid-turn delays that connection by
	// at most this much.
	Lease time.Duration
	// MaxConns bounds the pool (default 8).
	MaxConns int32
}

// Store is an open PostgreSQL store.
type Store struct {
	pool     *pgxpool.Pool
	cipher   *seal.Cipher
	instance string
	lease    time.Duration

	// Now is the clock; tests replace it.
	Now func() time.Time

	mu stdsync.Mutex
	// generation is the token generation this process last read or wrote
	// per connection: a save succeeds only if the stored one is still it
	// (see SaveToken).
	generation map[int64]int64
	// claims are the connections whose turn this process holds.
	claims map[int64]*claim

	rows store.RowCounter
}

// Open connects, migrates and checks the token key. Every error about the
// URL, the login or the key wraps ErrConfig and never holds the password.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, configError(BadURL, "database URL: "+redact(err.Error(), databaseURL))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	} else if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "syncer"
	// Times are text in this schema; keep the session's own formatting out
	// of anything the server formats, and sort as SQLite does.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if opts.TokenKey == nil && !opts.PlaintextTokens {
		return nil, configError(KeyRequired, "a token key is required: tokens in a shared server reach its backups, replicas and superusers, so they are sealed")
	}
	s := &Store{instance: opts.Instance, lease: opts.Lease, Now: time.Now, generation: map[int64]int64{}, claims: map[int64]*claim{}}
	if s.instance == "" {
		s.instance = DefaultInstance()
	}
	if s.lease <= 0 {
		s.lease = time.Minute
	}
	if opts.TokenKey != nil {
		c, err := newTokenCipher(opts.TokenKey)
		if err != nil {
			return nil, configError(KeyRequired, err.Error())
		}
		s.cipher = c
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, dbError("connect to", err, databaseURL)
	}
	s.pool = pool
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, dbError("connect to", err, databaseURL)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.checkKey(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// OpenReader connects for reading only: no migration, no vault, no key, so
// any role with the reporting grants may use it (`syncer query`). Every
// transaction of the returned pool is READ ONLY by default; `syncer query`
// also begins its own as READ ONLY.
func OpenReader(ctx context.Context, databaseURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, configError(BadURL, "database URL: "+redact(err.Error(), databaseURL))
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "syncer query"
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, dbError("connect to", err, databaseURL)
	}
	return db, nil
}

// DefaultInstance is hostname:pid.
func DefaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Instance is the name this store records in leases and runs.
func (s *Store) Instance() string { return s.instance }

// Pool is the connection pool, for `syncer query` and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	return nil
}

// Ping checks the server answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return dbError("ping", err, "")
	}
	return nil
}

// Checkpoint is SQLite housekeeping; PostgreSQL checkpoints on its own.
func (s *Store) Checkpoint(context.Context) ([]store.WALCheckpoint, error) { return nil, nil }

type migration struct {
	version int
	name    string
	sql     string
}

func mustVersions() []migration {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	var out []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			panic("pgstore: migration " + e.Name() + " is not NNNN_name.sql")
		}
		b, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			panic("pgstore: migrations must be numbered 1, 2, 3, ...")
		}
	}
	return out
}

// migrationLock is the advisory lock key serializing migrations of
// instances starting together ("syncer" in ASCII).
const migrationLock = 0x73796e636572

// migrate applies the migrations the database lacks, all in one
// transaction, under a transaction-level advisory lock so two instances
// starting together migrate once.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return dbError("migrate", err, "")
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return dbError("migrate", err, "")
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return dbError("migrate", err, "")
	}
	var have int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM public.schema_migrations").Scan(&have); err != nil {
		return dbError("migrate", err, "")
	}
	all := mustVersions()
	if have > len(all) {
		return fmt.Errorf("pgstore: the database has schema version %d, newer than this syncer knows (%d): run the newer syncer, or restore a backup made before it", have, len(all))
	}
	if have == len(all) {
		return nil
	}
	for _, m := range all[have:] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return dbError("migrate ("+m.name+")", err, "")
		}
		if _, err := tx.Exec(ctx, "INSERT INTO public.schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return dbError("migrate", err, "")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return dbError("migrate", err, "")
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (s *Store) nowText() string { return s.now().Format(store.TimeFormat) }

// formatTime is a stored time; the zero time is NULL.
func formatTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := t.UTC().Format(store.TimeFormat)
	return &v
}

func parseTime(s *string) time.Time {
	if s == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// dbError says what failed, in words a person can act on, with the
// server's message and never the password. Login and URL problems wrap
// ErrConfig.
func dbError(op string, err error, databaseURL string) error {
	msg := redact(err.Error(), databaseURL)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "28"): // invalid authorization
			return &Error{Op: op, Msg: "the server refused the login: " + msg, Problem: LoginRefused, err: &redactedError{msg: msg, err: err}}
		case pe.Code == "3D000": // database does not exist
			return &Error{Op: op, Msg: msg, Problem: NoDatabase, err: &redactedError{msg: msg, err: err}}
		case pe.Code == "42501": // insufficient privilege
			return &Error{Op: op, Msg: msg, Problem: NoPrivilege, err: &redactedError{msg: msg, err: err}}
		}
		return fmt.Errorf("pgstore: %s: %s", op, msg)
	}
	if databaseURL != "" && pgconn.Timeout(err) {
		return &Error{Op: op, Msg: msg, Problem: Unreachable, err: &redactedError{msg: msg, err: err}}
	}
	return fmt.Errorf("pgstore: %s: %w", op, &redactedError{msg: msg, err: err})
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact removes the URL's password from msg.
func redact(msg, databaseURL string) string {
	if databaseURL == "" {
		return msg
	}
	if u, err := url.Parse(databaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(pw), "xxxxx")
		}
	}
	for _, kv := range strings.Fields(databaseURL) { // key=value DSNs
		if k, v, ok := strings.Cut(kv, "="); ok && k == "password" && v != "" {
			msg = strings.ReplaceAll(msg, strings.Trim(v, "'"), "xxxxx")
		}
	}
	return msg
}

// begin starts a transaction; the caller defers Rollback.
func (s *Store) begin(ctx context.Context) (pgx.Tx, error) {
	return s.pool.BeginTx(ctx, pgx.TxOptions{})
}
