// Package store keeps syncer's data in two SQLite files in one directory:
// snapshots.db (connections without secrets, snapshot history, run history
// and the reporting views; mode 0640 so a reporting group may read it) and
// tokens.db (the vault: refresh and access tokens; mode 0600 and
// synchronous=FULL, so a rotated refresh token survives a power cut once it
// is committed).
//
// Every exported method that writes is one BEGIN IMMEDIATE transaction.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	syncer "github.com/syncerhq/syncer"
	"github.com/syncerhq/syncer/store/seal"

	"modernc.org/sqlite" // pure Go, no cgo
)

// File names inside the data directory.
const (
	SnapshotsFile = "snapshots.db"
	TokensFile    = "tokens.db"
)

// TimeFormat is how every time is stored: RFC 3339, UTC, whole seconds.
const TimeFormat = "2006-01-02T15:04:05Z"

// ErrNotFound is returned when a named connection does not exist.
var ErrNotFound = errors.New("not found")

// Store is the open pair of databases.
type Store struct {
	dir       string
	snapshots *database
	tokens    *database
	cipher    *seal.Cipher // nil: tokens stored as plain text in the 0600 vault
	locks     connLocks    // the connections' refresh locks (lock.go)

	// Now is the clock; tests replace it.
	Now func() time.Time

	rows RowCounter
}

// RowCounter counts the snapshot rows committed, by provider; both stores
// (this one and pgstore) keep one for the metrics. The zero value is ready.
type RowCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

// Add counts n more rows of a provider.
func (r *RowCounter) Add(provider string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int64{}
	}
	r.n[provider] += n
}

// Counts returns a copy of the counts so far, by provider.
func (r *RowCounter) Counts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n)
}

// RowsWritten returns how many snapshot rows (a snapshot row and its
// companies or investments) this Store has committed since it was opened,
// by provider.
func (s *Store) RowsWritten() map[string]int64 { return s.rows.Counts() }

// Options tune Open.
type Options struct {
	// BusyTimeout is how long a write waits for another process's lock
	// before failing. Default 10s.
	BusyTimeout time.Duration
	// TokenKey, if set, is a 32-byte AES-256 key: token columns in tokens.db
	// are then sealed with AES-GCM.
	TokenKey []byte
	// Log receives the progress of a long migration (schema 5 compacts
	// the history written before). Nil: no progress lines.
	Log *slog.Logger
}

// Open creates the data directory (0750) if needed, opens both databases
// with their pragmas, checks the pragmas took, and migrates snapshots.db.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if err := checkDataDir(dir); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, Now: time.Now}
	var err error
	// Persistent WAL for snapshots.db only: SQLite would otherwise delete
	// its -wal and -shm files at the last close, and a reporting-group
	// member, who cannot create files in the 0750 directory, could then not
	// read the database at all while syncer is not running.
	snapshotsDB, err := openDB(ctx, filepath.Join(dir, SnapshotsFile), dbOptions{
		mode: 0o640, synchronous: "NORMAL", busy: opts.BusyTimeout,
		persistWAL: true, newPageSize: snapshotsPageSize,
		// A multi-row INSERT keeps a statement journal (the pages it
		// changes, to undo it alone if it fails) in a temporary file once
		// it passes 64 KiB: a few pages of this size. In memory it costs
		// no system calls; a 100,000-investment snapshot was written 20%
		// faster (BenchmarkSaveEstateGuru). syncer's own queries on this
		// pool build no large temporary tables.
		pragmas: []string{"temp_store(MEMORY)"},
	})
	if err != nil {
		return nil, err
	}
	s.snapshots = newDatabase(snapshotsDB)
	// secure_delete: a rotated-away or deleted token is overwritten on disk,
	// not left in a free page.
	tokensDB, err := openDB(ctx, filepath.Join(dir, TokensFile), dbOptions{
		mode: 0o600, synchronous: "FULL", busy: opts.BusyTimeout,
		pragmas: []string{"secure_delete(ON)"},
	})
	if err != nil {
		s.snapshots.Close()
		return nil, err
	}
	s.tokens = newDatabase(tokensDB)
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := s.compactHistory(ctx, log); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrateVault(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.setTokenKey(ctx, opts.TokenKey); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// closeWait bounds how long Close waits for writes under way.
const closeWait = 5 * time.Second

// Close closes both databases, then the connection locks. It first waits
// (up to closeWait) for the writes under way to end: a connection whose
// lock went before its token save was in could be taken by another
// process, which would then refresh with the token being replaced.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	var errs []error
	// snapshots.db first: Connect holds its gate while it waits for the
	// vault's.
	for _, d := range []struct {
		file string
		db   *database
	}{{SnapshotsFile, s.snapshots}, {TokensFile, s.tokens}} {
		if d.db == nil {
			continue
		}
		unlock, err := d.db.lockWrites(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("store: closing %s with a write still under way after %s", d.file, closeWait))
			continue
		}
		defer unlock()
	}
	if s.snapshots != nil {
		errs = append(errs, s.snapshots.Close())
	}
	if s.tokens != nil {
		errs = append(errs, s.tokens.Close())
	}
	errs = append(errs, s.locks.close())
	return errors.Join(errs...)
}

// Ping checks both databases answer; the daemon's watchdog uses it.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.snapshots.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", SnapshotsFile, err)
	}
	if err := s.tokens.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", TokensFile, err)
	}
	var one int
	return s.snapshots.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// DSN builds a modernc.org/sqlite DSN with the pragmas in it, so every pooled
// connection gets them, not just the first.
func DSN(path string, pragmas []string, extra url.Values) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return "file:" + escapePath(path) + "?" + q.Encode()
}

// escapePath makes a file path safe inside a file: URI: "%", "?" and "#"
// (and anything else a URI path cannot hold) are percent-encoded, which
// SQLite decodes, so SYNCER_DATA_DIR=/srv/a%41 or /srv/a#b opens the file
// it names, not another. A leading "//" would read as an authority, so the
// path is cleaned first.
func escapePath(path string) string {
	return (&url.URL{Path: filepath.Clean(path)}).EscapedPath()
}

// checkOpened asks SQLite which file it opened (PRAGMA database_list) and
// fails unless it is the one at path.
func checkOpened(ctx context.Context, db *sql.DB, path string) error {
	var seq int
	var name, file string
	if err := db.QueryRowContext(ctx, "PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		return err
	}
	want, err := os.Stat(path)
	if err != nil {
		return err
	}
	got, err := os.Stat(file)
	if err != nil || !os.SameFile(got, want) {
		return fmt.Errorf("SQLite opened %q, not the file meant", file)
	}
	return nil
}

// snapshotsPageSize is the page size a new snapshots.db is created with.
// The history is written in large append-only transactions (a portfolio of
// 100,000 investments is about 10 MB of rows and 27 MB of raw answer) and
// read in scans, and SQLite writes each page to the WAL with system calls of
// its own: with 16 KiB pages instead of the default 4 KiB, such a snapshot
// was written 25% faster (BenchmarkSaveEstateGuru). Larger pages were faster
// still for it (64 KiB: 35%) but slowed the many small writes of a run over
// many connections (BenchmarkRun: 16 KiB 10% slower than 4 KiB, 64 KiB 40%).
// A database created before keeps its page size: changing it rewrites the
// whole file (VACUUM), which syncer leaves to its owner.
const snapshotsPageSize = 16384

// dbOptions say how openDB opens one database file.
type dbOptions struct {
	mode        os.FileMode
	synchronous string // NORMAL or FULL
	busy        time.Duration
	// persistWAL keeps the -wal and -shm files after the last close.
	persistWAL bool
	// newPageSize, if set, is the page size of a file created now.
	newPageSize int
	pragmas     []string
}

func openDB(ctx context.Context, path string, o dbOptions) (*sql.DB, error) {
	// Create the file ourselves so it is born with the right mode whatever
	// the umask; SQLite gives the -wal and -shm files the same mode.
	// It is opened without following a link and checked (trust.go).
	fi, err := openDataFile(path, o.mode)
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 && o.newPageSize > 0 {
		if err := initPageSize(ctx, path, o.newPageSize, o.busy); err != nil {
			return nil, fileError(path, "create", err)
		}
	}
	pragmas := append([]string{
		fmt.Sprintf("busy_timeout(%d)", o.busy.Milliseconds()),
		"journal_mode(WAL)",
		"synchronous(" + o.synchronous + ")",
		"foreign_keys(ON)",
	}, o.pragmas...)
	connector, err := sqlite.NewConnector(DSN(path, pragmas, url.Values{"_txlock": {"immediate"}}))
	if err != nil {
		return nil, fileError(path, "open", err)
	}
	if o.persistWAL {
		connector = persistWALConnector{connector}
	}
	db := sql.OpenDB(connector)
	if err := checkPragmas(ctx, db, o.synchronous); err != nil {
		db.Close()
		return nil, fileError(path, "open", err)
	}
	if err := checkOpened(ctx, db, path); err != nil {
		db.Close()
		return nil, fileError(path, "open", err)
	}
	return db, nil
}

// initPageSize gives an empty database file its page size. It must happen
// before the switch to WAL, which writes the first page, and the driver runs
// a DSN's pragmas in alphabetical order (journal_mode before page_size), so
// it takes a connection of its own. Two processes creating the file at once
// are safe: whichever writes the header first sets the size for both.
func initPageSize(ctx context.Context, path string, size int, busy time.Duration) error {
	pragmas := []string{fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()), fmt.Sprintf("page_size(%d)", size)}
	db, err := sql.Open("sqlite", DSN(path, pragmas, nil))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// Incremental auto-vacuum, which must be chosen before the first
	// table: the pages a run frees (the history keeps only what changed, so
	// every run deletes the rows the newest snapshot repeats) are handed
	// back to the file system at the checkpoint after the run instead of
	// staying in the file (Checkpoint).
	if _, err := db.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "PRAGMA journal_mode = WAL")
	return err
}

// checkPragmas reads the pragmas back: a DSN typo or a file that is not a
// database shows up here, at open, not in the middle of a sync.
func checkPragmas(ctx context.Context, db *sql.DB, synchronous string) error {
	var journal string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return err
	}
	if !strings.EqualFold(journal, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal", journal)
	}
	var fk, sync int
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return err
	}
	if fk != 1 {
		return errors.New("foreign_keys is off")
	}
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return err
	}
	want := map[string]int{"NORMAL": 1, "FULL": 2}[synchronous]
	if sync != want {
		return fmt.Errorf("synchronous is %d, want %d (%s)", sync, want, synchronous)
	}
	// A file that is not a database passes the pragmas above on some
	// versions; reading the schema does not.
	var n int
	return db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n)
}

// FileProblem is what a person can fix about a file the store could not
// use.
type FileProblem int

const (
	ProblemOther       FileProblem = iota // none of the below: a fault to report
	ProblemDamaged                        // not a database, or corrupt
	ProblemNotWritable                    // no permission, a read-only file or directory
	ProblemDiskFull                       // no space left
)

// FileError is an error using one of the store's files: it names the file
// and says which problem it was, for the command to say what to do.
type FileError struct {
	Op, Path string
	Problem  FileProblem
	Err      error
}

func (e *FileError) Error() string { return "store: " + e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// fileError names the file and the problem, for the errors a person can
// fix: a corrupt file, no permission, a full disk, a read-only directory.
func fileError(path, op string, err error) error {
	err = withoutPath(err, path)
	msg := err.Error()
	problem := ProblemOther
	switch {
	case strings.Contains(msg, "not a database"), strings.Contains(msg, "malformed"), strings.Contains(msg, "corrupt"):
		problem = ProblemDamaged
	case errors.Is(err, os.ErrPermission), strings.Contains(msg, "readonly"), strings.Contains(msg, "read-only"), strings.Contains(msg, "permission denied"):
		problem = ProblemNotWritable
	case strings.Contains(msg, "disk is full"), strings.Contains(msg, "no space"), noSpaceLeft(path):
		problem = ProblemDiskFull
	}
	return &FileError{Op: op, Path: path, Problem: problem, Err: err}
}

// withoutPath drops the path from an *fs.PathError about path, so a
// message that names the path itself says it once.
func withoutPath(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && (pe.Path == path || filepath.Dir(pe.Path) == path || pe.Path == filepath.Dir(path)) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	path := filepath.Join(s.dir, SnapshotsFile)
	tx, err := s.snapshots.begin(ctx)
	if err != nil {
		return fileError(path, "migrate", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fileError(path, "migrate", err)
	}
	if version > syncer.SchemaVersion {
		return fmt.Errorf("store: %s has schema version %d, newer than this syncer knows (%d): run the newer syncer, or restore a backup made before it", path, version, syncer.SchemaVersion)
	}
	if version == syncer.SchemaVersion {
		return nil
	}
	if err := addColumns(ctx, tx); err != nil {
		return fileError(path, "migrate", err)
	}
	if _, err := tx.ExecContext(ctx, syncer.Schema); err != nil {
		return fileError(path, "migrate", err)
	}
	if version > 0 && version < 5 {
		// The history written before schema 5 is compacted after this
		// transaction, in small ones of its own (compactHistory).
		if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO store_pending (task) VALUES (?)", compactTask); err != nil {
			return fileError(path, "migrate", err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", syncer.SchemaVersion)); err != nil {
		return fileError(path, "migrate", err)
	}
	if err := tx.Commit(); err != nil {
		return fileError(path, "migrate", err)
	}
	return nil
}

// addColumns adds the columns of syncer.AddedColumns that an existing table
// lacks (a new database gets them from schema.sql). A connection whose state
// is not active gets its last update as the time its state began.
func addColumns(ctx context.Context, tx *writeTx) error {
	for _, c := range syncer.AddedColumns {
		var tableExists, has int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", c.Table).Scan(&tableExists); err != nil {
			return err
		}
		if tableExists == 0 {
			continue
		}
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?", c.Table, c.Column).Scan(&has); err != nil {
			return err
		}
		if has > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", c.Table, c.Column, c.Decl)); err != nil {
			return err
		}
		if c.Table == "connection" && c.Column == "state_since" {
			if _, err := tx.ExecContext(ctx, "UPDATE connection SET state_since = updated_at WHERE state <> 'active'"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

// formatTime stores a time; the zero time is NULL.
func formatTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(TimeFormat)
}

// parseTime reads a stored time; NULL or garbage is the zero time.
func parseTime(ns sql.NullString) time.Time {
	if !ns.Valid {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, ns.String)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// persistWALConnector sets SQLITE_FCNTL_PERSIST_WAL on every connection it
// opens, so the -wal and -shm files outlive the last connection.
type persistWALConnector struct{ driver.Connector }

func (c persistWALConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if fc, ok := conn.(sqlite.FileControl); ok {
		if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}
