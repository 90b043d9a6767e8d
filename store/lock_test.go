package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLockConnectionExcludesTurnsAndProcesses: a connection's lock keeps
// out a second turn of the same store and a second store on the same data
// directory (as another process would be: its own open file description),
// leaves other connections free, and is free again once released or once
// its holder closes.
func TestLockConnectionExcludesTurnsAndProcesses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir) // two processes' stores

	unlock, err := a.LockConnection(ctx, 7, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"same store": a, "second store": b} {
		if _, err := s.LockConnection(ctx, 7, 30*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
			t.Errorf("%s, connection 7 held: err = %v, want ErrLockTimeout", name, err)
		}
		u, err := s.LockConnection(ctx, 8, 30*time.Millisecond)
		if err != nil {
			t.Errorf("%s, connection 8 free: %v", name, err)
			continue
		}
		u()
	}
	unlock()
	u, err := b.LockConnection(ctx, 7, time.Second)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// Closing the holder releases what it held, as a dying process does.
	b.Close()
	_ = u
	u2, err := a.LockConnection(ctx, 7, time.Second)
	if err != nil {
		t.Fatalf("after the holder closed: %v", err)
	}
	u2()

	fi, err := os.Stat(filepath.Join(dir, "locks", ConnectionLocksFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "locks"))
	if len(entries) != 1 {
		t.Errorf("locks/ holds %d files, want 1 (one file for every connection)", len(entries))
	}
}

// An unlock called twice does not release the lock another turn took since.
func TestUnlockTwiceLeavesTheNextHoldersLock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir) // two processes' stores
	first, err := a.LockConnection(ctx, 3, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first()
	second, err := a.LockConnection(ctx, 3, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer second()
	first() // again, late
	if _, err := b.LockConnection(ctx, 3, 30*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("another process got the lock the second turn holds: %v", err)
	}
}

// Closing a store keeps its connection locks until the writes under way
// are done: a run stopped mid-save (the daemon gave up waiting for it)
// must not let another process take the connection and refresh with the
// token that save is replacing.
func TestCloseKeepsConnectionLocksUntilWritesAreDone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := openStore(t, dir), openStore(t, dir)                     // the daemon's, another process's
	if _, err := a.LockConnection(ctx, 7, time.Second); err != nil { // its run never unlocks
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		wrote <- a.tokens.group(ctx, func(context.Context, *sql.Conn, *sql.Tx) error {
			close(entered)
			<-release // a token save under way
			return nil
		})
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	// Close has had time to release the lock, had it not waited.
	if u, err := b.LockConnection(ctx, 7, 200*time.Millisecond); err == nil {
		u()
		t.Fatal("another store took the connection while the closing store's save was under way")
	}
	close(release)
	if err := <-wrote; err != nil {
		t.Fatalf("the write under way: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	u, err := b.LockConnection(ctx, 7, time.Second)
	if err != nil {
		t.Fatalf("after the close: %v", err)
	}
	u()
}
