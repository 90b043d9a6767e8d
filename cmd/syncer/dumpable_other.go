//go:build !linux

package main

import "syscall"

// noCoreDumps sets the core file size limit to 0 where there is no prctl.
func noCoreDumps() error {
	return syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 0, Max: 0})
}
