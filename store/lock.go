package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrLockTimeout is wrapped by LockConnection's error when another process
// held the lock for longer than the wait allowed.
var ErrLockTimeout = errors.New("another syncer process is syncing this connection")

// LockConnection takes the connection's refresh lock, shared by every syncer
// process using this data directory: while it is held, no other process
// refreshes or syncs the connection, so a refresh token is never presented
// twice. It is an flock(2) on a file under locks/, which the kernel releases
// when the process dies, so kill -9 leaves no stale lock.
//
// It waits up to wait (or until ctx ends), then gives up with an error
// wrapping ErrLockTimeout.
func (s *Store) LockConnection(ctx context.Context, connID int64, wait time.Duration) (unlock func(), err error) {
	dir := filepath.Join(s.dir, "locks")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fileError(dir, "create", err)
	}
	path := filepath.Join(dir, "connection-"+strconv.FormatInt(connID, 10)+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fileError(path, "open", err)
	}
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fileError(path, "lock", err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: gave up after %s waiting for %s", ErrLockTimeout, wait, path)
		}
		t := time.NewTimer(min(delay, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}
