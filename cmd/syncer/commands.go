package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// command is one subcommand, declared once. Its help (`syncer help NAME`,
// `syncer NAME -help`), the global usage, the man page and the shell
// completions are all generated from this.
type command struct {
	name     string   // "query"; "connect everreal" for a command with a fixed second word
	args     string   // what follows the name in the synopsis
	summary  string   // one line, for the command list
	help     string   // a paragraph for the command's own usage (optional)
	examples []string // shell lines that run as printed
	hidden   bool     // left out of the list (completion, man)
	// ownFlags: the command parses its own arguments (a command written as
	// func(e env, args []string) error with newFlagSet and parseFlags;
	// setup is then selfParsing(thatFunc)). Prefer declaring flags in setup.
	ownFlags bool
	// setup declares the command's flags on fs and returns what runs the
	// command with the positional arguments left once the flags are parsed.
	setup func(fs *flag.FlagSet) func(e env, args []string) error
}

// commandList is every command, in the order the usage lists them. Adding a
// command is one entry here (and its setup function beside its code).
func commandList() []*command {
	return []*command{
		{name: "connect everreal", args: "-name N (-subdomain S | -url U) (-username EMAIL | -web [-redirect-url U])",
			summary: "connect an EverReal account (password from stdin or a no-echo prompt, or a browser login)",
			help: "The password grant reads the password from a no-echo prompt on a terminal, or one line of stdin.\n" +
				"It is never taken from the command line or the environment, never stored and never logged.\n" +
				"-web logs in through the browser (authorization code with PKCE) instead.",
			examples: []string{"syncer connect everreal -name acme -subdomain acme -username you@example.com",
				"syncer connect everreal -name acme -subdomain acme -web -redirect-url http://127.0.0.1:8765/callback"},
			setup: setupConnectEverReal},
		{name: "connect estateguru", args: "-name N [-url U] [-redirect-url U]",
			summary:  "connect an EstateGuru account (the documented authorize call)",
			examples: []string{"syncer connect estateguru -name savings"},
			setup:    setupConnectEstateGuru},
		{name: "import", args: "-provider everreal|estateguru -name N [-url U | -subdomain S]",
			summary:  "store a refresh token obtained elsewhere, read from stdin",
			help:     "The token is read from stdin (or a no-echo prompt) and checked with one refresh before anything is stored.",
			examples: []string{"syncer import -provider estateguru -name savings < token.txt"},
			setup:    setupImport},
		{name: "status", args: "[-json]",
			summary:  "connections and their health; exit 1 if any needs attention",
			examples: []string{"syncer status", "syncer status -json"},
			setup:    setupStatus},
		{name: "disconnect", args: "NAME",
			summary:  "revoke where the provider can, delete the tokens, keep the snapshots",
			examples: []string{"syncer disconnect acme"},
			setup:    setupDisconnect},
		{name: "query", args: "[-format table|csv|json] [-wide] [SQL]",
			summary: "read-only SQL on snapshots.db (SQL from stdin if not given)",
			help: "Flags may come before or after the SQL; put -- before SQL that starts with a dash.\n" +
				"On a terminal, table output is cut to its width (cells end in …); -wide keeps every cell whole.",
			examples: []string{"syncer query 'select * from latest_estateguru_portfolios'",
				"syncer query -format csv 'select * from estateguru_portfolio_history'",
				"echo 'select name, state from connections' | syncer query -format json"},
			setup: setupQuery},
		{name: "backup", args: "[-tokens FILE] PATH",
			summary: "consistent copy of snapshots.db (VACUUM INTO), safe while syncer runs",
			help: "PATH may be a directory (ending in /, or existing): the copy is written inside it.\n" +
				"-tokens FILE also copies tokens.db, mode 0600; keep it secret.",
			examples: []string{"syncer backup /var/backups/syncer/", "syncer backup -tokens /root/tokens-backup.db /var/backups/syncer/"},
			setup:    setupBackup},
		{name: "rekey", args: "(-new-key FILE | -remove)",
			summary: "re-seal every token in tokens.db with a new key (or none), in one transaction",
			help: "The current key comes from SYNCER_TOKEN_KEY_FILE (or the token-key credential); without one the vault is\n" +
				"plain text and -new-key turns encryption on. Then point SYNCER_TOKEN_KEY_FILE at the new key. See docs/security.md.",
			examples: []string{"syncer rekey -new-key /etc/syncer/token-key.new", "syncer rekey -remove"},
			ownFlags: true, setup: selfParsing(cmdRekey)},
		{name: "notify", args: "UNIT",
			summary:  "send a \"unit failed\" notification through SYNCER_NOTIFY_URLS and SYNCER_NOTIFY_COMMAND (systemd OnFailure=)",
			examples: []string{"syncer notify syncer-once.service"},
			ownFlags: true, setup: selfParsing(cmdNotify)},
		{name: "copy", args: "-to postgres://USER@HOST/DB",
			summary: "copy the SQLite store (history, connections, tokens, runs) into PostgreSQL; safe to run again",
			help: "Copies in bounded transactions with a progress line and checks the row counts; an interrupted copy\n" +
				"is finished by running it again. See docs/postgres.md.",
			examples: []string{"syncer copy -to postgres://syncer@db.example.com/syncer"},
			ownFlags: true, setup: selfParsing(cmdCopy)},
		{name: "demo", args: "[-dir DIR]",
			summary:  "the whole job against the built-in sandbox, with several days of history, in ./syncer-demo/",
			examples: []string{"syncer demo"},
			setup:    setupDemo},
		{name: "sandbox", args: "[-dir DIR] [-env FILE]",
			summary: "run both providers' loopback fakes until stopped, and print the environment to use them",
			help: "Prints export lines for a shell; then `syncer -once`, the daemon, `status` and the rest run against\n" +
				"the fakes. The sandbox's users and passwords are printed too. Stop it with Ctrl-C.",
			examples: []string{"syncer sandbox", "syncer sandbox -env sandbox.env &"},
			setup:    setupSandbox},
		{name: "version", summary: "print the version, commit, build date and Go version",
			examples: []string{"syncer version"},
			setup:    setupVersion},
		{name: "help", args: "[COMMAND]", summary: "print the usage, or one command's usage",
			examples: []string{"syncer help query"},
			setup:    setupHelp},
		{name: "completion", args: "bash|zsh|fish", hidden: true,
			summary:  "print a shell completion script",
			examples: []string{"syncer completion bash > /etc/bash_completion.d/syncer"},
			setup:    setupCompletion},
		{name: "man", hidden: true, summary: "print the man page (roff)",
			examples: []string{"syncer man | man -l -"},
			setup:    setupMan},
	}
}

// daemonCommand is syncer with no command: the daemon, or one run (-once).
func daemonCommand() *command {
	return &command{name: "", args: "[-once] [-connection NAME]...",
		summary:  "run on SYNCER_SCHEDULE until SIGTERM; -once: sync now and exit",
		examples: []string{"syncer -once", "syncer -once -connection acme", "syncer"},
		setup:    setupSync}
}

// flagSet is the command's flags, declared on a fresh set that reports its
// errors instead of printing them.
func (c *command) flagSet() (*flag.FlagSet, func(e env, args []string) error) {
	fs := flag.NewFlagSet("syncer "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.setup(fs)
	return fs, run
}

func (c *command) synopsis() string {
	return strings.Join(strings.Fields("syncer "+c.name+" "+c.args), " ")
}

// usage prints the command's own usage: synopsis, help, flags, examples.
func (c *command) usage(w io.Writer) {
	fs, run := c.flagSet()
	if c.ownFlags {
		// Its own -help (parseFlags) prints the table's text and its flags.
		_ = run(env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: w, stderr: io.Discard}, []string{"-help"})
		return
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", c.synopsis(), upperFirst(c.summary))
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", c.help)
	}
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range c.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// dispatch finds the command named by the first arguments and runs it.
func dispatch(e env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runCommand(e, daemonCommand(), args)
	}
	cmds := commandList()
	if len(args) > 1 {
		if c := find(cmds, args[0]+" "+args[1]); c != nil {
			return runCommand(e, c, args[2:])
		}
	}
	if c := find(cmds, args[0]); c != nil {
		return runCommand(e, c, args[1:])
	}
	if group := withPrefix(cmds, args[0]+" "); len(group) > 0 {
		// "connect" alone, "connect -help" or an unknown second word.
		if len(args) > 1 && isHelpFlag(args[1]) {
			for i, c := range group {
				if i > 0 {
					fmt.Fprintln(e.stdout)
				}
				c.usage(e.stdout)
			}
			return flag.ErrHelp
		}
		words := make([]string, len(group))
		for i, c := range group {
			words[i] = strings.TrimPrefix(c.name, args[0]+" ")
		}
		if len(args) > 1 {
			return usageError{msg: fmt.Sprintf("%s: unknown %q (%s)", args[0], args[1], strings.Join(words, " or ")), cmd: args[0]}
		}
		return usageError{msg: fmt.Sprintf("%s needs one of: %s", args[0], strings.Join(words, ", ")), cmd: args[0]}
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := nearest(cmds, args[0]); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return usageError{msg: msg}
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// runCommand parses the command's flags, wherever they stand among its
// arguments, and runs it.
func runCommand(e env, c *command, args []string) error {
	fs, run := c.flagSet()
	if c.ownFlags {
		err := run(e, args)
		var ue usageError
		if errors.As(err, &ue) && ue.cmd == "" {
			ue.cmd = c.name
			return ue
		}
		return err
	}
	rest, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		if c.name == "" {
			printUsage(e.stdout)
		} else {
			c.usage(e.stdout)
		}
		return flag.ErrHelp
	}
	if err != nil {
		msg := err.Error()
		if c.name != "" {
			msg = c.name + ": " + msg
		}
		return usageError{msg: msg, cmd: c.name}
	}
	err = run(e, rest)
	var ue usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = c.name
		return ue
	}
	return err
}

// parseInterspersed parses flags before, between and after positional
// arguments (`syncer query 'select 1' -format json`); everything after "--"
// is positional. A word that looks like a flag and is not one is an error,
// never an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" && !flagTookValue(fs, args[:consumed]) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagTookValue tells whether the last of the parsed words was a flag's
// value ("-name --") rather than the "--" terminator.
func flagTookValue(fs *flag.FlagSet, parsed []string) bool {
	if len(parsed) < 2 {
		return false
	}
	prev := strings.TrimLeft(parsed[len(parsed)-2], "-")
	if !strings.HasPrefix(parsed[len(parsed)-2], "-") || strings.Contains(prev, "=") {
		return false
	}
	f := fs.Lookup(prev)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

func find(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

func withPrefix(cmds []*command, prefix string) []*command {
	var out []*command
	for _, c := range cmds {
		if strings.HasPrefix(c.name, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// topNames is the distinct first words of the command names.
func topNames(cmds []*command, hidden bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cmds {
		if c.hidden && !hidden {
			continue
		}
		w := strings.Fields(c.name)[0]
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// nearest is the command name closest to a mistyped one, if any is close.
func nearest(cmds []*command, typed string) string {
	best, bestD := "", 3 // at most two edits away
	for _, n := range topNames(cmds, false) {
		d := editDistance(strings.ToLower(typed), n)
		if strings.HasPrefix(n, typed) && len(typed) >= 2 {
			d = 1
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

const usageHead = `syncer keeps OAuth access to EverReal and EstateGuru alive and stores what
they report as SQLite history.

Usage:
`

const usageTail = `
Run 'syncer help COMMAND' (or 'syncer COMMAND -help') for a command's flags
and examples.

Exit codes: 0 success; 1 finished, but something needs attention; 2 usage or
configuration error, nothing written.

Configuration (environment only):
`

// printUsage is the global usage, generated from the command list.
func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	d := daemonCommand()
	fmt.Fprintf(tw, "  %s\t%s\n", d.synopsis(), d.summary)
	fmt.Fprintf(tw, "  syncer -version\tprint the version\n")
	for _, c := range commandList() {
		if c.hidden {
			continue
		}
		fmt.Fprintf(tw, "  syncer %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, usageTail)
	printEnvUsage(w)
}

func setupHelp(fs *flag.FlagSet) func(e env, args []string) error {
	return func(e env, args []string) error {
		if len(args) == 0 {
			printUsage(e.stdout)
			return nil
		}
		name := strings.Join(args, " ")
		cmds := commandList()
		if c := find(cmds, name); c != nil {
			c.usage(e.stdout)
			return nil
		}
		if group := withPrefix(cmds, name+" "); len(group) > 0 {
			for i, c := range group {
				if i > 0 {
					fmt.Fprintln(e.stdout)
				}
				c.usage(e.stdout)
			}
			return nil
		}
		msg := fmt.Sprintf("help: unknown command %q", name)
		if s := nearest(cmds, args[0]); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return usagef("%s", msg)
	}
}

func setupVersion(fs *flag.FlagSet) func(e env, args []string) error {
	return func(e env, args []string) error {
		if len(args) > 0 {
			return usagef("version takes no arguments")
		}
		printVersion(e.stdout)
		return nil
	}
}

// selfParsing adapts a command that parses its own arguments (with
// newFlagSet and parseFlags) to the table; its entry sets ownFlags: true.
func selfParsing(run func(e env, args []string) error) func(*flag.FlagSet) func(e env, args []string) error {
	return func(*flag.FlagSet) func(e env, args []string) error { return run }
}

// newFlagSet and parseFlags are for commands that parse their own
// arguments (see selfParsing): -help prints the command's usage from the table
// with these flags.
func newFlagSet(name string, _ env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, e env, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if c := find(commandList(), fs.Name()); c != nil {
				fmt.Fprintf(e.stdout, "Usage: %s\n\n%s.\n", c.synopsis(), upperFirst(c.summary))
				if c.help != "" {
					fmt.Fprintf(e.stdout, "\n%s\n", c.help)
				}
			}
			fmt.Fprintln(e.stdout, "\nFlags:")
			fs.SetOutput(e.stdout)
			fs.PrintDefaults()
			return flag.ErrHelp
		}
		return usageError{msg: fmt.Sprintf("%s: %v", fs.Name(), err), cmd: fs.Name()}
	}
	return nil
}

// flagNames lists a command's flags, sorted, with their leading dash.
func flagNames(c *command) []string {
	fs, _ := c.flagSet()
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, "-"+f.Name) })
	sort.Strings(out)
	return out
}
