package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNoDatabase is wrapped by the error of a reader opening a data
// directory where no sync ever wrote.
var ErrNoDatabase = errors.New("does not exist yet")

// OpenReports opens snapshots.db read-only, for `syncer query` and other
// readers: SQLite itself refuses any write (mode=ro), whatever the SQL says.
func OpenReports(ctx context.Context, dir string) (*sql.DB, error) {
	return openReadOnly(ctx, dir, "busy_timeout(5000)", "query_only(1)")
}

func openReadOnly(ctx context.Context, dir string, pragmas ...string) (*sql.DB, error) {
	return openReadOnlyFile(ctx, dir, SnapshotsFile, pragmas...)
}

func openReadOnlyFile(ctx context.Context, dir, file string, pragmas ...string) (*sql.DB, error) {
	path := filepath.Join(dir, file)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: %s %w", path, ErrNoDatabase)
		}
		return nil, fileError(path, "open", err)
	}
	db, err := sql.Open("sqlite", DSN(path, pragmas, url.Values{"mode": {"ro"}}))
	if err != nil {
		return nil, fileError(path, "open", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		db.Close()
		return nil, fileError(path, "open", err)
	}
	if err := checkOpened(ctx, db, path); err != nil {
		db.Close()
		return nil, fileError(path, "open", err)
	}
	return db, nil
}

// Reader is one read-only connection to snapshots.db for SQL written by a
// person. Besides mode=ro and query_only, it may not ATTACH another database
// (SQLITE_LIMIT_ATTACHED is 0), so snapshots.db is the only file a query can
// reach: without that, `ATTACH 'x.db'; PRAGMA query_only=0; CREATE TABLE
// x.t ...` would write a file. Every refusal comes from SQLite itself, not
// from a parser of ours guessing what a statement does.
type Reader struct {
	db   *sql.DB
	conn *sql.Conn
}

// OpenReader opens a Reader on the data directory's snapshots.db.
func OpenReader(ctx context.Context, dir string) (*Reader, error) {
	db, err := OpenReports(ctx, dir)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fileError(filepath.Join(dir, SnapshotsFile), "open", err)
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		conn.Close()
		db.Close()
		return nil, fileError(filepath.Join(dir, SnapshotsFile), "open", err)
	}
	return &Reader{db: db, conn: conn}, nil
}

// Query runs SQL on the reader's one connection. Given several statements,
// SQLite runs them in order and the rows are the last one's.
func (r *Reader) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.conn.QueryContext(ctx, query, args...)
}

// Close closes the connection and its database handle.
func (r *Reader) Close() error {
	return errors.Join(r.conn.Close(), r.db.Close())
}

// Backup writes a consistent copy of the data directory's snapshots.db to
// path with VACUUM INTO, and checks the copy. It reads one snapshot of the
// database in one read transaction, so it is safe while syncs run (they
// neither wait for it nor change what it copies), and it needs only read
// access: a member of the reporting group can take one. The copy is
// compact (no free pages, no WAL) and mode 0640. tokens.db is never copied:
// back it up separately (BackupTokens), and keep that copy as secret as the
// original.
func Backup(ctx context.Context, dir, path string) (size int64, err error) {
	return backupFile(ctx, dir, SnapshotsFile, path, 0o640)
}

// BackupTokens writes a consistent copy of tokens.db to path the same way,
// mode 0600 (never readable by anyone but its owner), never over an
// existing file. The tokens in it are encrypted if the vault's are (with
// the same key: back the key up apart from this copy).
func BackupTokens(ctx context.Context, dir, path string) (size int64, err error) {
	return backupFile(ctx, dir, TokensFile, path, 0o600)
}

// backupFile makes the copy in a private directory (0700) beside path,
// then links it to path, which never replaces anything: nothing is ever
// written through path itself, so a link someone swaps in there cannot
// redirect the copy.
func backupFile(ctx context.Context, dir, file, path string, mode os.FileMode) (size int64, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("backup: %s: %w", path, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return 0, fmt.Errorf("backup: %s already exists; choose a new file name", path)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(abs), ".syncer-backup-")
	if err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, file)
	db, err := openReadOnlyFile(ctx, dir, file, "busy_timeout(5000)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	// A plain path, never a URI: tmp starts with "/", so a name such as
	// "file:x?mode=memory" cannot turn into something else.
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	f, err := os.OpenFile(tmp, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	if err := checkCopy(ctx, tmp); err != nil {
		return 0, err
	}
	// link(2) fails if path exists, whatever is there, link or not.
	if err := os.Link(tmp, abs); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("backup: %s already exists; choose a new file name", path)
		}
		return 0, fileError(abs, "back up to", err)
	}
	return st.Size(), nil
}

// checkCopy opens the backup read-only and runs quick_check on it, so a
// backup that says it worked can be restored.
func checkCopy(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", DSN(path, nil, url.Values{"mode": {"ro"}}))
	if err != nil {
		return fileError(path, "check backup", err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		return fileError(path, "check backup", err)
	}
	if res != "ok" {
		return fmt.Errorf("backup: %s failed its check: %s", path, res)
	}
	return nil
}

// ReadConnections lists the connections from the data directory's
// snapshots.db opened read-only: it needs read access to that file alone (a
// member of the reporting group), never writes, never migrates, and never
// creates the directory or a database. A database of an older schema is
// read as it is.
func ReadConnections(ctx context.Context, dir string) ([]Connection, error) {
	db, err := OpenReports(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	path := filepath.Join(dir, SnapshotsFile)
	var hasSince int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info('connection') WHERE name = 'state_since'").Scan(&hasSince); err != nil {
		return nil, fileError(path, "read", err)
	}
	cols := connectionColumns
	if hasSince == 0 {
		cols = strings.Replace(cols, "state_since", "NULL", 1)
	}
	rows, err := db.QueryContext(ctx, "SELECT "+cols+" FROM connection ORDER BY name")
	if err != nil {
		return nil, fileError(path, "read", err)
	}
	defer rows.Close()
	var out []Connection
	for rows.Next() {
		c, err := scanConnection(rows)
		if err != nil {
			return nil, fileError(path, "read", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
