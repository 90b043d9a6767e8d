package main

import "golang.org/x/sys/unix"

// noCoreDumps keeps the process's memory (client secrets, the token key,
// tokens) out of core files and away from other processes of the same user:
// no core file whatever the service manager's limit (the watchdog's SIGABRT
// under GOTRACEBACK=crash would write one), and not dumpable, which also
// bars ptrace and /proc/<pid>/mem to everyone but root.
func noCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return err
	}
	return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
