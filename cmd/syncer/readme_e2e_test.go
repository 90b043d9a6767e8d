package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
)

// TestReadmeExamples runs every ```sh block of README.md as printed, in
// order, in one scratch directory, with `syncer` (and `go run ./cmd/syncer`)
// being the binary under test. Blocks fenced as ```bash are steps for a
// real server or real accounts and are not run. `go test ./...` is not run
// again from inside itself.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readme); n > 12*1024 {
		t.Errorf("README.md is %d bytes; keep it under 12 KiB and move reference material to docs/", n)
	}
	ci, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	// .ci/run may run it beside a service (`.ci/postgres go test ./...`),
	// but the command itself is the README's.
	if !strings.Contains(string(readme), "go test ./...") || !regexp.MustCompile(`(?m)^[^#\n]*\bgo test \./\.\.\.$`).Match(ci) {
		t.Errorf("the README's test command and .ci/run's must both be `go test ./...`")
	}

	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d sh blocks in README.md; the demo, the sandbox and the queries should be there", len(blocks))
	}
	bin := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(bin, "syncer")); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "COLUMNS=80"}
	for i, b := range blocks {
		script := strings.ReplaceAll(b[1], "go run ./cmd/syncer", "syncer")
		var lines []string
		for _, l := range strings.Split(script, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "go test ") {
				continue
			}
			lines = append(lines, l)
		}
		script = "set -e\n" + strings.Join(lines, "\n")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Dir, cmd.Env = work, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// A process that left the group (timeout(1) makes its own) must not
		// keep the output pipe, and with it this test, open for ever.
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left in the background
		cancel()
		if err != nil {
			t.Fatalf("README sh block %d failed: %v\n--- block\n%s\n--- output\n%s", i+1, err, b[1], out)
		}
		t.Logf("block %d:\n%s", i+1, out)
	}

	// What the blocks promise: history in the demo, the daemon's own runs
	// against the sandbox.
	demo, err := store.OpenReports(context.Background(), filepath.Join(work, "syncer-demo"))
	if err != nil {
		t.Fatal(err)
	}
	defer demo.Close()
	var history int
	if err := demo.QueryRow("SELECT count(*) FROM estateguru_portfolio_history WHERE value_change_cents IS NOT NULL").Scan(&history); err != nil || history == 0 {
		t.Fatalf("the demo's history: %d rows with a change (%v)", history, err)
	}
	sb, err := store.OpenReports(context.Background(), filepath.Join(work, "syncer-sandbox"))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	var scheduled int
	if err := sb.QueryRow("SELECT count(*) FROM sync_runs WHERE trigger = 'schedule' AND status = 'ok'").Scan(&scheduled); err != nil || scheduled == 0 {
		t.Fatalf("the daemon against the sandbox made %d ok scheduled runs (%v)", scheduled, err)
	}
}
