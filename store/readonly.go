package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

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
			return nil, fmt.Errorf("store: %s does not exist yet: run `syncer -once` (or `syncer demo`) first, or set SYNCER_DATA_DIR", path)
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
// born mode 0600 (never readable by anyone but its owner), never over an
// existing file. The tokens in it are encrypted if the vault's are (with
// the same key: back the key up apart from this copy).
func BackupTokens(ctx context.Context, dir, path string) (size int64, err error) {
	return backupFile(ctx, dir, TokensFile, path, 0o600)
}

func backupFile(ctx context.Context, dir, file, path string, mode os.FileMode) (size int64, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("backup: %s: %w", path, err)
	}
	// Create the file first, exclusively: it is born with its mode whatever
	// the umask, and an existing file is never overwritten. VACUUM INTO
	// accepts an empty file.
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode&0o600)
	if errors.Is(err, os.ErrExist) {
		return 0, fmt.Errorf("backup: %s already exists; choose a new file name", path)
	}
	if err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(abs)
		}
	}()
	if err := os.Chmod(abs, mode); err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	db, err := openReadOnlyFile(ctx, dir, file, "busy_timeout(5000)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	// A plain path, never a URI: abs starts with "/", so a name such as
	// "file:x?mode=memory" cannot turn into something else.
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", abs); err != nil {
		return 0, fileError(abs, "back up to", err)
	}
	if err := checkCopy(ctx, abs); err != nil {
		return 0, err
	}
	st, err := os.Stat(abs)
	if err != nil {
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
