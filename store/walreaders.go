package store

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// walReaders names the other processes holding a WAL read lock on the
// database file in dir: the readers that keep a checkpoint from truncating
// its WAL. It reads /proc/locks (Linux): SQLite readers of a WAL database
// hold a shared POSIX lock on one of the read-mark bytes of its -shm file
// (offsets 123 to 127). Each is "pid N (command line) uid U". Where that
// cannot be read, it returns nothing.
func walReaders(dir, file string) []string {
	fi, err := os.Stat(filepath.Join(dir, file+"-shm"))
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer f.Close()
	inode := ":" + strconv.FormatUint(st.Ino, 10)
	seen := map[int]bool{os.Getpid(): true}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: POSIX  ADVISORY  READ 1234 08:01:5678 123 123
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[1] != "POSIX" || fields[3] != "READ" || !strings.HasSuffix(fields[5], inode) {
			continue
		}
		start, err := strconv.Atoi(fields[6])
		if err != nil || start < 123 || start > 127 {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, describeProcess(pid))
	}
	return out
}

func describeProcess(pid int) string {
	proc := fmt.Sprintf("/proc/%d", pid)
	cmd := "?"
	if b, err := os.ReadFile(proc + "/cmdline"); err == nil && len(b) > 0 {
		cmd = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if len(cmd) > 80 {
			cmd = cmd[:80] + "…"
		}
	}
	uid := "?"
	if fi, err := os.Stat(proc); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = strconv.FormatUint(uint64(st.Uid), 10)
		}
	}
	return fmt.Sprintf("pid %d (%s) uid %s", pid, cmd, uid)
}
