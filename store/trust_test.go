package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// otherUID is a user the tests hand files to (nobody).
const otherUID = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root; run the tests as root to cover this")
	}
}

// Finding 2: another user who pre-creates tokens.db (0666) in the data
// directory does not get the tokens: syncer refuses the file, writes
// nothing into it.
func TestOpenRefusesADatabaseFileOfAnotherUser(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, TokensFile)
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	if err := os.Chown(path, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dir, Options{})
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.Owner != otherUID {
		t.Fatalf("Open = %v, want an OwnerError naming uid %d", err, otherUID)
	}
	fi, _ := os.Stat(path)
	if fi.Size() != 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("the other user's file was touched: size %d, mode %04o", fi.Size(), fi.Mode().Perm())
	}
}

// A database file writable by group or others is refused, even if it is
// syncer's own: someone else may have changed it.
func TestOpenRefusesAFileWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir).Close()
	path := filepath.Join(dir, TokensFile)
	if err := os.Chmod(path, 0o620); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, Options{}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Open = %v, want ErrUntrusted", err)
	}
}

// A snapshots.db symlink is refused, and its target's mode is not changed.
func TestOpenRefusesASymlinkedDatabase(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, SnapshotsFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, Options{}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Open = %v, want ErrUntrusted", err)
	}
	fi, _ := os.Stat(target)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("the link's target got mode %04o", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the link's target was written: %q", b)
	}
}

// A data directory writable by others, or in a world-writable parent
// without the sticky bit, is refused; one owned by another user too.
func TestOpenRefusesAnUntrustedDataDirectory(t *testing.T) {
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), filepath.Join(shared, "data"), Options{}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Open in a 0777 parent = %v, want ErrUntrusted", err)
	}
	open := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := Open(context.Background(), open, Options{}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Open of a 0777 directory = %v, want ErrUntrusted", err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Fatalf("files created in a refused directory: %v", entries)
	}
	// /tmp-like: world-writable with the sticky bit is a fine parent.
	sticky := t.TempDir()
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	openStore(t, filepath.Join(sticky, "data"))
}

// Finding 12: a data directory of another user (the service's) is refused
// with an OwnerError, and nothing is created in it.
func TestOpenRefusesAnotherUsersDataDirectory(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dir, Options{})
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.Owner != otherUID || oe.User != 0 {
		t.Fatalf("Open = %v, want an OwnerError", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files created in another user's directory: %v", entries)
	}
}

// Finding 3: a link swapped in at the backup's path while it is written
// never redirects the copy: Backup writes nothing through that path.
func TestBackupIsNotRedirectedByASwappedLink(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(7, 200))
	out := t.TempDir()
	victim := filepath.Join(t.TempDir(), "chosen-by-the-other-user")
	for i := range 10 {
		target := filepath.Join(out, fmt.Sprintf("backup-%d.db", i))
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the other user, swapping a link in as soon as a file appears
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if fi, err := os.Lstat(target); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
					os.Remove(target)
					os.Symlink(victim, target)
				}
			}
		}()
		Backup(context.Background(), dir, target)
		close(done)
		wg.Wait()
		if _, err := os.Stat(victim); err == nil {
			t.Fatalf("run %d: the backup was written where the swapped link pointed", i)
		}
	}
}

// Finding 7: a data directory whose name holds URI syntax ("%41", "#",
// "?") opens the files it names, not others.
func TestDataDirectoryNameIsNotURISyntax(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "a%41b#c?d")
	s := openStore(t, dir)
	connect(t, s, "eg", "estateguru")
	s.Close()
	for _, f := range []string{SnapshotsFile, TokensFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == 0 {
			t.Fatalf("%s is empty: the database went elsewhere", f)
		}
	}
	entries, _ := os.ReadDir(top)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files beside the data directory: %q", names)
	}
	r, err := OpenReader(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
