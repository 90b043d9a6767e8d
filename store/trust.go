package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The data directory holds the tokens, so syncer trusts it only when no one
// but its own user can have put anything there: the directory and each
// database file belong to the user syncer runs as and are writable by no
// one else, and a database file is never a symbolic link. Under those
// rules a path checked once stays the same file: nobody else can rename,
// replace or plant anything in the directory.

// OwnerError says a data directory or file belongs to another user than
// the one syncer runs as. The command line adds how to run syncer as its
// owner.
type OwnerError struct {
	Path  string
	Owner int // uid of the file's owner
	User  int // uid syncer runs as
}

func (e *OwnerError) Error() string {
	return fmt.Sprintf("store: %s belongs to uid %d, not to uid %d that syncer runs as; syncer uses a data directory only as its owner, so that files it creates stay usable by the service and no one else can plant a file there", e.Path, e.Owner, e.User)
}

// ErrUntrusted marks a data directory or file that syncer refuses because
// another user could have written it.
var ErrUntrusted = errors.New("untrusted data directory")

// ErrUnsafeParent marks, among the ErrUntrusted errors, a data directory
// in a directory every user may write to: another place is the fix.
var ErrUnsafeParent = errors.New("data directory in a world-writable directory")

type untrustedError struct {
	msg  string
	kind error // a finer sentinel, or nil
}

func (e *untrustedError) Error() string { return e.msg }
func (e *untrustedError) Is(target error) bool {
	return target == ErrUntrusted || (e.kind != nil && target == e.kind)
}

func untrusted(format string, args ...any) error {
	return &untrustedError{msg: fmt.Sprintf(format, args...)}
}

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkDataDir creates dir (0750) if it is missing and checks it may be
// trusted: a directory, owned by this process's user, writable by no one
// else, in a parent that no one else can swap it out of.
func checkDataDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("store: data directory %s: %w", dir, err)
	}
	parent := filepath.Dir(abs)
	if pfi, err := os.Stat(parent); err == nil {
		// A world-writable parent without the sticky bit lets anyone rename
		// the data directory away and put their own in its place.
		if pfi.Mode().Perm()&0o002 != 0 && pfi.Mode()&fs.ModeSticky == 0 {
			return &untrustedError{kind: ErrUnsafeParent, msg: fmt.Sprintf("store: data directory %s is in %s, which every user may write to (mode %04o, no sticky bit): anyone could replace it; choose a data directory in a place only you can write", dir, parent, pfi.Mode().Perm())}
		}
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return fileError(dir, "create data directory", withoutPath(err, abs))
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fileError(abs, "open", err)
	}
	if !fi.IsDir() {
		return untrusted("store: data directory %s is not a directory", dir)
	}
	if uid := os.Geteuid(); ownerOf(fi) != uid {
		return &OwnerError{Path: dir, Owner: ownerOf(fi), User: uid}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return untrusted("store: data directory %s is writable by other users (mode %04o): they could plant or replace the database files; make it yours alone: chmod 750 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// openDataFile opens (creating with mode) a database file without following
// a symbolic link, checks that its owner is this process's user and that no
// one else may write it, then sets its mode on the open descriptor. The
// -wal and -shm files beside it, which SQLite opens by name, get the same
// checks when they exist.
func openDataFile(path string, mode os.FileMode) (fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, mode)
	if errors.Is(err, syscall.ELOOP) {
		return nil, untrusted("store: %s is a symbolic link; syncer does not follow links in its data directory: put the real file there", path)
	}
	if err != nil {
		return nil, fileError(path, "open", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, "open", err)
	}
	if err := checkDataFile(path, fi); err != nil {
		return nil, err
	}
	// On the descriptor, not the path: the mode lands on the file checked.
	if err := f.Chmod(mode); err != nil {
		return nil, fileError(path, "set mode on", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		side, err := os.Lstat(path + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fileError(path+suffix, "open", err)
		}
		if side.Mode()&fs.ModeSymlink != 0 {
			return nil, untrusted("store: %s is a symbolic link; syncer does not follow links in its data directory", path+suffix)
		}
		if err := checkDataFile(path+suffix, side); err != nil {
			return nil, err
		}
	}
	return fi, nil
}

func checkDataFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return untrusted("store: %s is not a regular file", path)
	}
	if uid := os.Geteuid(); ownerOf(fi) != uid {
		return &OwnerError{Path: path, Owner: ownerOf(fi), User: uid}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return untrusted("store: %s is writable by other users (mode %04o): someone else may have changed it; check it, then make it yours alone (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	return nil
}
