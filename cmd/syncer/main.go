// Command syncer keeps OAuth access to EverReal and EstateGuru alive and
// turns what they report into SQLite history. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // CRON_TZ= works on hosts without zoneinfo
)

// Exit codes, as scripts and systemd see them.
const (
	exitOK        = 0
	exitAttention = 1 // the run finished but a connection failed or needs re-login
	exitUsage     = 2 // usage or configuration error; nothing was written
)

func main() {
	if err := noCoreDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "syncer: cannot turn core dumps off:", err)
		os.Exit(exitUsage)
	}
	ctx, stop := signalContext()
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once, for a person who will not wait.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "syncer: second signal, exiting now")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// env is what a command gets: its streams and the context.
type env struct {
	ctx    context.Context
	args   []string // the command line, for hints that repeat it
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// usageError is a mistake on the command line: exit 2.
// cmd, when set, names the command whose usage helps.
type usageError struct{ msg, cmd string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

// attentionError: the command did its work, but something needs a person:
// exit 1.
type attentionError struct{ msg string }

func (e attentionError) Error() string { return e.msg }

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{ctx: ctx, args: args, stdin: stdin, stdout: stdout, stderr: stderr}
	err := withHint(dispatch(e, args))
	var ue usageError
	var ae attentionError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "syncer:", ue.msg)
		if ue.cmd != "" {
			fmt.Fprintf(stderr, "Run 'syncer help %s' for usage.\n", ue.cmd)
		} else {
			fmt.Fprintln(stderr, "Run 'syncer -help' for usage.")
		}
		return exitUsage
	case errors.As(err, &ae):
		if ae.msg != "" {
			fmt.Fprintln(stderr, "syncer:", ae.msg)
		}
		return exitAttention
	case errors.Is(err, errConfig):
		fmt.Fprintln(stderr, "syncer: configuration:", strings.TrimPrefix(err.Error(), errConfig.Error()+": "))
		return exitUsage
	default:
		fmt.Fprintln(stderr, "syncer:", err)
		return exitAttention
	}
}

var errConfig = errors.New("configuration")

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
