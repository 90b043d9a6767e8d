package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is wrapped by LockConnection's error when another process
// held the lock for longer than the wait allowed.
var ErrLockTimeout = errors.New("another syncer process is syncing this connection")

// ConnectionLocksFile holds every connection's refresh lock, under locks/.
const ConnectionLocksFile = "connections.lock"

// LockConnection takes the connection's refresh lock, shared by every syncer
// process using this data directory: while it is held, no other process
// (nor another turn of this one) refreshes or syncs the connection, so a
// refresh token is never presented twice.
//
// The lock is the byte at offset connID of locks/connections.lock, taken
// with an open file description lock (fcntl F_OFD_SETLK), which the kernel
// releases when the process dies, so kill -9 leaves no stale lock. One file
// opened once serves every connection: a lock file per connection (flock,
// before) cost an open, and on a new data directory a create, per
// connection and run, and with 10,000 connections those creates in one
// directory took a quarter of the run's CPU. Locks taken through one open
// file do not exclude each other, so the turns of this process are kept
// apart in memory (connLocks.held).
//
// It waits up to wait (or until ctx ends), then gives up with an error
// wrapping ErrLockTimeout.
func (s *Store) LockConnection(ctx context.Context, connID int64, wait time.Duration) (unlock func(), err error) {
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		unlock, err := s.locks.try(s.dir, connID)
		if err != nil || unlock != nil {
			return unlock, err
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: gave up after %s waiting for %s (byte %d)", ErrLockTimeout, wait,
				filepath.Join(s.dir, "locks", ConnectionLocksFile), connID)
		}
		t := time.NewTimer(min(delay, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// connLocks is a store's handle on locks/connections.lock and the
// connections this process holds.
type connLocks struct {
	mu   sync.Mutex
	file *os.File // opened at the first lock, closed with the store
	held map[int64]bool
}

// try takes the connection's lock if it is free: a nil unlock and no error
// when another turn or process holds it.
func (l *connLocks) try(dataDir string, connID int64) (unlock func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[connID] {
		return nil, nil
	}
	if l.file == nil {
		dir := filepath.Join(dataDir, "locks")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fileError(dir, "create", err)
		}
		path := filepath.Join(dir, ConnectionLocksFile)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fileError(path, "open", err)
		}
		l.file, l.held = f, map[int64]bool{}
	}
	if err := l.fcntl(connID, unix.F_WRLCK); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINTR) {
			return nil, nil
		}
		return nil, fileError(l.file.Name(), "lock", err)
	}
	l.held[connID] = true
	// Once only, and only on the file it was taken through: a second call,
	// or one after the store was closed (which released it) and opened
	// again, must not release a lock another turn holds now.
	f := l.file
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.file != f {
				return
			}
			_ = fcntlLock(f, connID, unix.F_UNLCK)
			delete(l.held, connID)
		})
	}, nil
}

func (l *connLocks) fcntl(connID int64, typ int16) error { return fcntlLock(l.file, connID, typ) }

func fcntlLock(f *os.File, connID int64, typ int16) error {
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &unix.Flock_t{Type: typ, Whence: 0, Start: connID, Len: 1})
}

// close closes the lock file, releasing every lock still held.
func (l *connLocks) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file, l.held = nil, nil
	return err
}
