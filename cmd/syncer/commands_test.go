package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
)

// runArgs runs syncer in-process and returns its exit code and output.
func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// Every command prints its own usage, with its own flags, for both
// `syncer help CMD` and `syncer CMD -help`, and exits 0; the global usage
// lists every visible command.
func TestEveryCommandDescribesItself(t *testing.T) {
	_, global, _ := runArgs(t, "-help")
	for _, c := range commandList() {
		if c.summary == "" || c.setup == nil {
			t.Errorf("%q: needs a summary and a setup", c.name)
		}
		if len(c.examples) == 0 {
			t.Errorf("%q: needs an example", c.name)
		}
		for _, ex := range c.examples {
			if !strings.Contains(ex, "syncer "+c.name) {
				t.Errorf("%q: example %q does not run this command", c.name, ex)
			}
		}
		if !c.hidden && !strings.Contains(global, "syncer "+c.name+" ") {
			t.Errorf("global usage does not list %q", c.name)
		}
		for _, args := range [][]string{
			append([]string{"help"}, strings.Fields(c.name)...),
			append(strings.Fields(c.name), "-help"),
		} {
			code, out, errOut := runArgs(t, args...)
			if code != 0 || errOut != "" {
				t.Errorf("syncer %s: exit %d, stderr %q; want 0 and nothing", strings.Join(args, " "), code, errOut)
			}
			if !strings.HasPrefix(out, "Usage: "+c.synopsis()+"\n") {
				t.Errorf("syncer %s: does not start with its synopsis:\n%s", strings.Join(args, " "), out)
			}
			if strings.Contains(out, "Configuration (environment only)") {
				t.Errorf("syncer %s printed the global usage, not the command's", strings.Join(args, " "))
			}
			fs, _ := c.flagSet()
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(out, "  -"+f.Name) {
					t.Errorf("syncer %s: flag -%s missing", strings.Join(args, " "), f.Name)
				}
			})
		}
	}
}

func TestUnknownCommandSuggestsNearest(t *testing.T) {
	for typed, want := range map[string]string{"qeury": `did you mean "query"`, "stat": `did you mean "status"`, "conect": `did you mean "connect"`} {
		code, _, errOut := runArgs(t, typed)
		if code != exitUsage || !strings.Contains(errOut, want) {
			t.Errorf("syncer %s: exit %d, %q; want 2 and %s", typed, code, errOut, want)
		}
	}
	if code, _, errOut := runArgs(t, "xyzzy"); code != exitUsage || strings.Contains(errOut, "did you mean") {
		t.Errorf("syncer xyzzy: exit %d, %q; want 2 and no suggestion", code, errOut)
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	format := fs.String("format", "table", "")
	wide := fs.Bool("wide", false, "")
	name := fs.String("name", "", "")
	for _, tc := range []struct {
		args   []string
		pos    string
		format string
	}{
		{[]string{"select 1", "-format", "json"}, "select 1", "json"},
		{[]string{"-format", "csv", "select 1"}, "select 1", "csv"},
		{[]string{"-wide", "select", "1", "-format=json"}, "select 1", "json"},
		{[]string{"-format", "csv", "--", "-1", "-format"}, "-1 -format", "csv"},
		{[]string{"-name", "--", "select 1"}, "select 1", "table"},
	} {
		*format, *wide, *name = "table", false, ""
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := strings.Join(pos, " "); got != tc.pos || *format != tc.format {
			t.Errorf("%q: args %q, format %q; want %q, %q", tc.args, got, *format, tc.pos, tc.format)
		}
	}
	// A flag that is not one is refused, never read as SQL.
	code, _, errOut := runArgs(t, "query", "select 1", "-fromat", "json")
	if code != exitUsage || !strings.Contains(errOut, "-fromat") || !strings.Contains(errOut, "syncer help query") {
		t.Errorf("exit %d, %q; want 2 naming -fromat and the command's help", code, errOut)
	}
}

func TestTableFitsWidth(t *testing.T) {
	rows := [][]string{{"connection", "raw"}, {"estateguru-seed", strings.Repeat("x", 200)}}
	w := fitColumns(rows, 40)
	if total := w[0] + 2 + w[1]; total > 40 {
		t.Fatalf("widths %v: %d columns wide, want at most 40", w, total)
	}
	if got := cut(strings.Repeat("x", 200), w[1]); !strings.HasSuffix(got, "…") || len([]rune(got)) != w[1] {
		t.Fatalf("cut = %q", got)
	}
	if got := cut("short", 10); got != "short" {
		t.Fatalf("cut(short) = %q", got)
	}
}

func TestCompletionsAndManCoverEveryCommand(t *testing.T) {
	outs := map[string]string{}
	for _, args := range [][]string{{"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"}, {"man"}} {
		code, out, errOut := runArgs(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("syncer %v: exit %d: %s", args, code, errOut)
		}
		outs[strings.Join(args, " ")] = out
	}
	for _, c := range commandList() {
		if c.hidden {
			continue
		}
		for name, out := range outs {
			if !strings.Contains(out, strings.Fields(c.name)[len(strings.Fields(c.name))-1]) {
				t.Errorf("%s lacks %q", name, c.name)
			}
			for _, f := range flagNames(c) {
				flagText := f
				if name == "man" {
					flagText = strings.ReplaceAll(f, "-", `\-`)
				} else if strings.HasPrefix(name, "completion fish") {
					flagText = "-o " + strings.TrimPrefix(f, "-")
				}
				if !strings.Contains(out, flagText) {
					t.Errorf("%s lacks %s of %q", name, f, c.name)
				}
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}} {
		code, out, _ := runArgs(t, args...)
		if code != 0 || !strings.HasPrefix(out, "syncer ") || !strings.Contains(out, "go1.") {
			t.Errorf("syncer %v: exit %d, %q", args, code, out)
		}
	}
}

// A command written the old way (its own flag set, parseFlags) fits the
// table through selfParsing, -help included.
func TestOwnFlagsCommand(t *testing.T) {
	var got string
	legacy := func(e env, args []string) error {
		fs := newFlagSet("version", e) // a name the table knows, for its synopsis
		to := fs.String("to", "", "where to")
		if err := parseFlags(fs, e, args); err != nil {
			return err
		}
		got = *to + "|" + strings.Join(fs.Args(), ",")
		return nil
	}
	c := &command{name: "version", summary: "x", ownFlags: true, setup: selfParsing(legacy)}
	var out bytes.Buffer
	e := env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &out, stderr: &out}
	if err := runCommand(e, c, []string{"-to", "pg", "a"}); err != nil || got != "pg|a" {
		t.Fatalf("run: %v, got %q", err, got)
	}
	out.Reset()
	c.usage(&out)
	if !strings.Contains(out.String(), "Usage: syncer version") || !strings.Contains(out.String(), "-to") {
		t.Fatalf("usage of an ownFlags command:\n%s", out.String())
	}
	err := runCommand(e, c, []string{"-nope"})
	if ue, ok := err.(usageError); !ok || ue.cmd != "version" {
		t.Fatalf("a bad flag = %#v, want a usage error naming the command", err)
	}
}
