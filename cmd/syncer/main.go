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
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// attentionError: the command did its work, but something needs a person:
// exit 1.
type attentionError struct{ msg string }

func (e attentionError) Error() string { return e.msg }

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{ctx: ctx, args: args, stdin: stdin, stdout: stdout, stderr: stderr}
	err := dispatch(e, args)
	var ue usageError
	var ae attentionError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "syncer:", ue.msg)
		fmt.Fprintln(stderr, "Run 'syncer -help' for usage.")
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

func dispatch(e env, args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest := args[0], args[1:]
		switch cmd {
		case "connect":
			return cmdConnect(e, rest)
		case "import":
			return cmdImport(e, rest)
		case "status":
			return cmdStatus(e, rest)
		case "disconnect":
			return cmdDisconnect(e, rest)
		case "query":
			return cmdQuery(e, rest)
		case "backup":
			return cmdBackup(e, rest)
		case "rekey":
			return cmdRekey(e, rest)
		case "demo":
			return cmdDemo(e, rest)
		case "notify":
			return cmdNotify(e, rest)
		case "copy": // issue 16
			return cmdCopy(e, rest)
		case "help":
			printUsage(e.stdout)
			return nil
		}
		return usagef("unknown command %q (commands: connect, import, status, disconnect, query, backup, rekey, demo, notify)", cmd)
	}
	return cmdSync(e, args)
}

const usageText = `syncer keeps OAuth access to EverReal and EstateGuru alive and stores what
they report as SQLite history.

Usage:
  syncer [-once] [-connection NAME]...   run on SYNCER_SCHEDULE until SIGTERM; -once: sync now and exit
  syncer connect everreal -name N (-subdomain S | -url U) -username EMAIL [-web]
                                         log in (password from stdin or a no-echo prompt)
  syncer connect estateguru -name N [-url U] [-redirect-url U]
                                         the documented authorize call
  syncer import -provider everreal|estateguru -name N [-url U | -subdomain S]
                                         store a refresh token read from stdin
  syncer status [-json]                  connections and their health; exit 1 if any needs attention
  syncer disconnect NAME                 revoke where possible, delete the tokens, keep the snapshots
  syncer query [-format table|csv|json] [-csv-raw] [-timeout D] [SQL]
                                         read-only SQL on snapshots.db (SQL from stdin if not given)
  syncer backup PATH                     consistent copy of snapshots.db (VACUUM INTO), safe while running
  syncer rekey (-new-key FILE | -remove)
                                         re-seal every token in tokens.db with a new key (or none)
  syncer demo                            the whole job against the built-in sandbox, in ./syncer-demo/
  syncer notify UNIT                     send a "unit failed" notification (systemd OnFailure=)
  syncer copy -to postgres://...         copy the SQLite store into PostgreSQL (docs/postgres.md)

Exit codes: 0 success; 1 finished, but something needs attention; 2 usage or
configuration error, nothing written.

Configuration (environment only):
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	printEnvUsage(w)
}

// newFlagSet makes a flag set that reports errors as usage errors instead
// of printing and exiting.
func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses and turns flag's errors into usage errors; -help prints
// the usage and succeeds.
func parseFlags(fs *flag.FlagSet, e env, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.stdout)
			return flag.ErrHelp
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
