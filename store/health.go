package store

import (
	"context"
	"path/filepath"
	"syscall"
)

// CheckWritable makes one small durable write to tokens.db (a timestamp in
// vault_meta, committed with synchronous=FULL like a token). The sync loop
// calls it before a refresh: a refresh may rotate the refresh token, and a
// rotated token that cannot be saved is lost for good, so a vault that
// cannot take a write (read-only, disk full, locked by another process past
// the busy timeout) must fail the connection before the provider is asked.
//
// It is a probe, not a promise: space can run out between it and the save.
func (s *Store) CheckWritable(ctx context.Context) error {
	// Committed with the other writes waiting (group): with many
	// connections refreshing at once, one sync of the disk for all.
	_, err := s.tokens.exec(ctx, `INSERT INTO vault_meta (key, value) VALUES ('write_check', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, s.now().Format(TimeFormat))
	if err != nil {
		return fileError(filepath.Join(s.dir, TokensFile), "write to", err)
	}
	return nil
}

// noSpaceLeft reports whether the file system holding path has (nearly) no
// space left. SQLite reports a full disk as "disk is full" only for some
// writes; creating the -shm file of a database on a full disk says "disk
// I/O error", which alone would send a person looking for a failing disk.
func noSpaceLeft(path string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return false
	}
	return uint64(st.Bavail)*uint64(st.Bsize) < 1<<20
}
