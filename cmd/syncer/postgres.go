package main

// PostgreSQL instead of SQLite (issue 16): SYNCER_DATABASE_URL selects
// store/pgstore; unset, the SQLite store in SYNCER_DATA_DIR stays.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
)

// appStore is what the commands need of a store, SQLite's or PostgreSQL's.
type appStore interface {
	sync.Store
	ConnectionByName(ctx context.Context, name string) (store.Connection, error)
	Connect(ctx context.Context, name, providerName, baseURL string, tok provider.Token) (store.Connection, error)
	Disconnect(ctx context.Context, connID int64) error
	CloseAbandonedRuns(ctx context.Context) (int, error)
	Ping(ctx context.Context) error
	Retain(ctx context.Context, olderThan time.Time) (int, error)
	Checkpoint(ctx context.Context) ([]store.WALCheckpoint, error)
	Close() error

	// Monitoring (issue 11): metrics and notifications after every run.
	RowsWritten() map[string]int64
	ConsecutiveFailures(ctx context.Context) (map[int64]int, error)
	NotifyStates(ctx context.Context) (map[int64]store.NotifyState, error)
	SetNotifyState(ctx context.Context, connID int64, st store.NotifyState) error

	// Rekey re-seals every token with a new key (nil: none); issue 12.
	Rekey(ctx context.Context, newKey []byte) (int, error)
}

var (
	_ appStore = (*store.Store)(nil)
	_ appStore = (*pgstore.Store)(nil)
)

// postgresConfigError turns a configuration problem of the PostgreSQL store
// into a configuration error (exit 2) naming the variable and the fix; any
// other error is returned as it is, for withHint to explain.
func postgresConfigError(err error) error {
	var pe *pgstore.Error
	if !errors.Is(err, pgstore.ErrConfig) || !errors.As(err, &pe) {
		return err
	}
	variable, hint := postgresHint(pe.Problem)
	msg := strings.TrimPrefix(pe.Error(), "pgstore: ")
	if variable != "" {
		msg = variable + ": " + msg
	}
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return fmt.Errorf("%w: %s", errConfig, msg)
}

// usesPostgres reports whether SYNCER_DATABASE_URL selects PostgreSQL.
func (c *Config) usesPostgres() bool { return c.DatabaseURL != "" }

// checkDatabaseURL validates SYNCER_DATABASE_URL without connecting, and
// never quotes its password.
func checkDatabaseURL(raw string) error {
	if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
		return errors.New("SYNCER_DATABASE_URL: not a postgres:// URL (try \"postgres://syncer@db.example:5432/syncer?sslmode=verify-full\"; unset it to keep SQLite)")
	}
	if _, err := pgconn.ParseConfig(raw); err != nil {
		msg := err.Error()
		if u, uerr := url.Parse(raw); uerr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
		return fmt.Errorf("SYNCER_DATABASE_URL: %s", msg)
	}
	return nil
}

func (a *app) openPostgres(ctx context.Context) (*pgstore.Store, error) {
	st, err := pgstore.Open(ctx, a.cfg.DatabaseURL, pgstore.Options{
		TokenKey:        a.cfg.TokenKey,
		PlaintextTokens: a.cfg.DatabasePlaintextTokens,
		Lease:           a.cfg.DatabaseLease,
		// Every connection in flight may hold one, plus the two waiting to
		// write, the run's own records and a lease renewal or two.
		MaxConns: int32(a.cfg.Concurrency + 6),
	})
	if err != nil {
		return nil, postgresConfigError(err)
	}
	return st, nil
}

// readConnections lists the connections read-only, for `syncer status` and
// `syncer notify`: snapshots.db alone with SQLite; with PostgreSQL a
// read-only session of its own (no migration, no vault, no key), so the
// reporting role's URL is enough.
func (a *app) readConnections(ctx context.Context) ([]store.Connection, error) {
	if !a.cfg.usesPostgres() {
		return store.ReadConnections(ctx, a.cfg.DataDir)
	}
	conns, err := pgstore.ReadConnections(ctx, a.cfg.DatabaseURL)
	if err != nil {
		return nil, postgresConfigError(err)
	}
	return conns, nil
}

// queryPostgres runs a read-only query for `syncer query`: a READ ONLY
// transaction on a connection of its own (no migration, no vault, no key),
// so the reporting role's URL works too. close ends it.
func (a *app) queryPostgres(ctx context.Context, query string) (rows *sql.Rows, close func(), err error) {
	db, err := pgstore.OpenReader(ctx, a.cfg.DatabaseURL)
	if err != nil {
		return nil, nil, postgresConfigError(err)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	closeAll := func() {
		_ = tx.Rollback()
		db.Close()
	}
	rows, err = tx.QueryContext(ctx, query)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return rows, closeAll, nil
}
