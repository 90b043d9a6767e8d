package main

// The end-to-end harness: the real binary, built once, run against the
// sandbox on loopback with a real data directory.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// binary is the path of the syncer binary built for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncer-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "syncer")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building syncer:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Canary secrets: tests assert they never show up in output or in
// snapshots.db.
const (
	canaryEverRealSecret   = "CANARY-everreal-client-secret-7f3a"
	canaryEstateGuruSecret = "CANARY-estateguru-client-secret-91bc"
)

// world is one test's sandbox and data directory.
type world struct {
	t       *testing.T
	sb      *sandbox.Sandbox
	dataDir string
	env     []string // extra SYNCER_* settings, KEY=VALUE
}

func newWorld(t *testing.T, opts sandbox.Options) *world {
	t.Helper()
	opts.EverRealClientID = "er-client"
	opts.EverRealClientSecret = canaryEverRealSecret
	opts.EstateGuruClientID = "eg-client"
	opts.EstateGuruClientSecret = canaryEstateGuruSecret
	sb, err := sandbox.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	return &world{t: t, sb: sb, dataDir: filepath.Join(t.TempDir(), "data")}
}

// environ is the child's whole environment: nothing of the test runner's
// SYNCER_* leaks in.
func (w *world) environ() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"SYNCER_DATA_DIR=" + w.dataDir,
		"SYNCER_EVERREAL_CLIENT_ID=er-client",
		"SYNCER_EVERREAL_CLIENT_SECRET=" + canaryEverRealSecret,
		"SYNCER_ESTATEGURU_CLIENT_ID=eg-client",
		"SYNCER_ESTATEGURU_CLIENT_SECRET=" + canaryEstateGuruSecret,
		"SYNCER_ESTATEGURU_URL=" + w.sb.EstateGuruURL,
		"SYNCER_RATE_LIMIT=0",
		"SYNCER_HTTP_TIMEOUT=5s",
		"SYNCER_LOG_LEVEL=debug",
	}
	return append(env, w.env...)
}

// result is one finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs the binary to completion with stdin, within a minute.
func (w *world) run(stdin string, args ...string) result {
	w.t.Helper()
	res, _ := w.runProcess(stdin, args...)
	return res
}

// runProcess is run that also returns the finished process's state (its
// resource usage, for one).
func (w *world) runProcess(stdin string, args ...string) (result, *os.ProcessState) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = w.environ()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("running syncer %v: %v", args, err)
	}
	w.noSecrets(res.stdout + res.stderr)
	return res, cmd.ProcessState
}

// mustRun runs and fails the test unless the exit code is want.
func (w *world) mustRun(want int, stdin string, args ...string) result {
	w.t.Helper()
	res := w.run(stdin, args...)
	if res.code != want {
		w.t.Fatalf("syncer %s: want exit %d, got:\n%s", strings.Join(args, " "), want, res)
	}
	return res
}

// secrets are the values that must never appear in output or reports.
func (w *world) secrets() []string {
	return []string{canaryEverRealSecret, canaryEstateGuruSecret}
}

func (w *world) noSecrets(text string, extra ...string) {
	w.t.Helper()
	for _, s := range append(w.secrets(), extra...) {
		if s != "" && strings.Contains(text, s) {
			w.t.Fatalf("a secret (%.12s...) appears in the output:\n%s", s, text)
		}
	}
}

// importEverReal connects an EverReal user through `syncer import`.
func (w *world) importEverReal(name, email string) {
	w.t.Helper()
	tok := w.sb.IssueEverRealRefreshToken(email)
	w.mustRun(0, tok+"\n", "import", "-provider", "everreal", "-name", name, "-url", w.sb.EverRealURL)
}

// importEstateGuru connects an investor through `syncer import`.
func (w *world) importEstateGuru(name, investor string) {
	w.t.Helper()
	tok := w.sb.IssueEstateGuruRefreshToken(investor)
	w.mustRun(0, tok+"\n", "import", "-provider", "estateguru", "-name", name, "-url", w.sb.EstateGuruURL)
}

// reports opens snapshots.db read-only, as a reporting user would.
func (w *world) reports() *sql.DB {
	w.t.Helper()
	db, err := store.OpenReports(context.Background(), w.dataDir)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a query returning one integer.
func (w *world) queryInt(q string, args ...any) int64 {
	w.t.Helper()
	var n sql.NullInt64
	if err := w.reports().QueryRow(q, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
	return n.Int64
}

func (w *world) queryString(q string, args ...any) string {
	w.t.Helper()
	var s sql.NullString
	if err := w.reports().QueryRow(q, args...).Scan(&s); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
	return s.String
}

// fileContains reports whether any of the data directory's files (the
// database, its WAL) contain s.
func fileContains(t *testing.T, path, s string) bool {
	t.Helper()
	for _, p := range []string{path, path + "-wal"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}
