package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// OpenReports opens snapshots.db read-only, for `syncer query` and other
// readers: SQLite itself refuses any write (mode=ro), whatever the SQL says.
func OpenReports(ctx context.Context, dir string) (*sql.DB, error) {
	path := filepath.Join(dir, SnapshotsFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("store: %s does not exist yet: run `syncer -once` (or `syncer demo`) first, or set SYNCER_DATA_DIR", path)
		}
		return nil, fileError(path, "open", err)
	}
	db, err := sql.Open("sqlite", DSN(path, []string{"busy_timeout(5000)", "query_only(1)"}, url.Values{"mode": {"ro"}}))
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

// Backup writes a consistent copy of snapshots.db to path with VACUUM INTO,
// safe while syncs run: it reads one snapshot of the database. tokens.db is
// never copied: back it up separately, and keep it as secret as the original.
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("backup: %s already exists; choose a new file name", path)
	}
	if _, err := s.snapshots.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fileError(path, "back up to", err)
	}
	return os.Chmod(path, 0o640)
}
