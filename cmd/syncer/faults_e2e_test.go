package main

// Faults, end to end: the real binary against a sandbox that fails in the
// ways providers and machines do. Every test checks what a person would
// notice: the exit code, what the connection says, that the snapshot taken
// before the fault is still there, and that the other connection still
// syncs.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// faultWorld is a world with an EstateGuru connection "eg" and an EverReal
// connection "er", synced once. Retries wait milliseconds, not seconds.
func faultWorld(t *testing.T, opts sandbox.Options) *world {
	t.Helper()
	w := newWorld(t, opts)
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er", "jo@example.com")
	w.env = []string{"SYNCER_RETRY_BACKOFF=10ms"}
	w.mustRun(0, "", "-once")
	// The next successful sync would store this: a faulty run must not.
	w.sb.SetEstateGuruCash("inv", "1.05")
	return w
}

const firstCashCents = 4887290014 // addSampleInvestor's cash

// previousSnapshotIntact fails unless eg's newest snapshot is still the one
// from before the fault, whole.
func (w *world) previousSnapshotIntact() {
	w.t.Helper()
	if got, want := w.queryInt("SELECT count(*) FROM estateguru_portfolios WHERE connection = 'eg'"), int64(1); got != want {
		w.t.Fatalf("eg portfolio snapshots = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(firstCashCents); got != want {
		w.t.Fatalf("eg cash_cents = %d, want %d (the snapshot from before the fault)", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM latest_estateguru_investments WHERE connection = 'eg'"), int64(2); got != want {
		w.t.Fatalf("eg investments = %d, want %d", got, want)
	}
	if got, want := w.queryString("PRAGMA integrity_check"), "ok"; got != want {
		w.t.Fatalf("snapshots.db integrity_check = %q", got)
	}
}

// lastResult is a connection's outcome in the newest run.
func (w *world) lastResult(name string) (status, errText string) {
	w.t.Helper()
	status = w.queryString("SELECT status FROM sync_results WHERE connection = ? ORDER BY run_id DESC LIMIT 1", name)
	errText = w.queryString("SELECT error FROM sync_results WHERE connection = ? ORDER BY run_id DESC LIMIT 1", name)
	return status, errText
}

// otherSynced fails unless the connection synced in the newest run.
func (w *world) otherSynced(name string) {
	w.t.Helper()
	if status, errText := w.lastResult(name); status != "ok" {
		w.t.Fatalf("%s: status %q (%s), want ok: one connection's fault must not stop the others", name, status, errText)
	}
}

// failedWith fails unless eg failed in the newest run with every piece of
// want in its error, and connections.last_error says the same.
func (w *world) failedWith(name string, want ...string) string {
	w.t.Helper()
	status, errText := w.lastResult(name)
	if status != "failed" {
		w.t.Fatalf("%s: status %q, want failed", name, status)
	}
	for _, s := range want {
		if !strings.Contains(errText, s) {
			w.t.Fatalf("%s: error %q should say %q", name, errText, s)
		}
	}
	if got := w.queryString("SELECT last_error FROM connections WHERE name = ?", name); got != errText {
		w.t.Fatalf("%s: last_error %q, want the run's error %q", name, got, errText)
	}
	return errText
}

func delta(after, before sandbox.Stats, e sandbox.Endpoint) int {
	return after.Requests[string(e)] - before.Requests[string(e)]
}

func TestServerErrorsThenSuccess(t *testing.T) {
	w := faultWorld(t, sandbox.Options{})
	// EverReal's answers carry X-RateLimit-Reset (up to 60 seconds): a 500
	// must not wait that out.
	for _, e := range []sandbox.Endpoint{sandbox.EstateGuruInvestments, sandbox.EverRealMe} {
		w.sb.Inject(e, sandbox.Fault{Status: 500, Body: `{"error":"server_error"}`, Times: 2})
	}
	before := w.sb.Stats()
	res := w.mustRun(0, "", "-once")
	after := w.sb.Stats()
	for _, e := range []sandbox.Endpoint{sandbox.EstateGuruInvestments, sandbox.EverRealMe} {
		if got, want := delta(after, before, e), 3; got != want {
			t.Fatalf("%s requests = %d, want %d (two 500s, then the answer)", e, got, want)
		}
	}
	// An operator sees each retry, not only the outcome.
	if got, want := strings.Count(res.stderr, "retrying"), 4; got != want {
		t.Fatalf("retry log lines = %d, want %d (two per provider):\n%s", got, want, res)
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "ok"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
}

func TestRateLimitedWithRetryAfter(t *testing.T) {
	w := faultWorld(t, sandbox.Options{})
	tooMany := `{"error":"too_many_requests","error_description":"Too Many Requests"}`

	// Asked to wait a second: syncer waits and gets the answer.
	w.sb.Inject(sandbox.EverRealMe, sandbox.Fault{Status: 429, Body: tooMany, Header: map[string]string{"Retry-After": "1"}})
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Status: 429, Body: tooMany, Header: map[string]string{"Retry-After": "1"}})
	before := w.sb.Stats()
	w.mustRun(0, "", "-once")
	after := w.sb.Stats()
	for _, e := range []sandbox.Endpoint{sandbox.EverRealMe, sandbox.EstateGuruInvestments} {
		if got, want := delta(after, before, e), 2; got != want {
			t.Fatalf("%s requests = %d, want %d", e, got, want)
		}
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}

	// Asked to wait an hour: past the cap, so this run gives up on that
	// connection at once and says why; the next run tries again.
	w.sb.SetEstateGuruCash("inv", "2.00")
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Status: 429, Body: tooMany, Header: map[string]string{"Retry-After": "3600"}})
	before = w.sb.Stats()
	w.mustRun(1, "", "-once")
	after = w.sb.Stats()
	if got, want := delta(after, before, sandbox.EstateGuruInvestments), 1; got != want {
		t.Fatalf("data requests = %d, want %d", got, want)
	}
	w.failedWith("eg", "HTTP 429", "asked to wait 1h0m0s")
	w.otherSynced("er")
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d (the snapshot from before)", got, want)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'eg'"), "active"; got != want {
		t.Fatalf("state = %q, want %q (waiting is enough)", got, want)
	}
}

func TestUnusableAnswersKeepThePreviousSnapshot(t *testing.T) {
	w := faultWorld(t, sandbox.Options{})
	for _, tc := range []struct {
		name  string
		fault sandbox.Fault
		say   []string
	}{
		{"HTML from a proxy", sandbox.Fault{Body: "<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"},
			[]string{"HTML", "kept out of the database"}},
		// A 502 is retried: 1 + SYNCER_RETRIES (3) attempts, all answered so.
		{"HTML error page from a gateway", sandbox.Fault{Status: 502, Body: "<html><body>502 Bad Gateway</body></html>", Times: 4},
			[]string{"HTML", "HTTP 502"}},
		{"truncated JSON", sandbox.Fault{Body: `{"cash":"1.05","currency":"EUR","investments":[{"name":"Tiny","quantity":"1","investmentAmoun`},
			[]string{"JSON", "kept out of the database"}},
		{"an answer past the 64 MiB cap", sandbox.Fault{Oversize: 1 << 30},
			[]string{"too large", "64 MiB"}},
	} {
		w.sb.Inject(sandbox.EstateGuruInvestments, tc.fault)
		res, maxRSS := w.runMeasured("-once")
		if res.code != 1 {
			t.Fatalf("%s: want exit 1, got:\n%s", tc.name, res)
		}
		w.failedWith("eg", tc.say...)
		w.previousSnapshotIntact()
		w.otherSynced("er")
		if tc.fault.Oversize > 0 {
			// A gigabyte was on offer; syncer read up to the cap and hung
			// up. What it holds is bounded by the cap, not the offer.
			if limit := int64(256 << 20); maxRSS > limit {
				t.Fatalf("%s: peak memory %d MiB, want under %d MiB", tc.name, maxRSS>>20, limit>>20)
			}
			t.Logf("%s: peak memory %d MiB", tc.name, maxRSS>>20)
		}
	}
	// With the provider well again, the next run stores the new data.
	w.mustRun(0, "", "-once")
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
}

func TestHTMLFromTheTokenEndpointLosesNoToken(t *testing.T) {
	// One-second access tokens: every run refreshes.
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	w.sb.Inject(sandbox.EstateGuruToken, sandbox.Fault{Body: "<html><body>Please wait while we check your browser</body></html>"})
	w.mustRun(1, "", "-once")
	w.failedWith("eg", "refresh", "HTML")
	w.previousSnapshotIntact()
	w.otherSynced("er")
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'eg'"), "active"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	w.mustRun(0, "", "-once")
	if st := w.sb.Stats(); st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh reuse = %d, refused = %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
}

func TestProviderThatNeverAnswers(t *testing.T) {
	t.Parallel()
	w := faultWorld(t, sandbox.Options{})
	w.env = append(w.env, "SYNCER_HTTP_TIMEOUT=1s", "SYNCER_RETRIES=1")
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Hang: true, Times: 100})
	before := w.sb.Stats()
	// run gives the binary a minute: finishing at all is the bound that
	// matters (a few SYNCER_HTTP_TIMEOUTs), not how fast.
	w.mustRun(1, "", "-once")
	after := w.sb.Stats()
	w.failedWith("eg", "no answer before the deadline (SYNCER_HTTP_TIMEOUT)")
	w.previousSnapshotIntact()
	w.otherSynced("er")
	// The request went out, so it is asked once more at once, then once per
	// SYNCER_RETRIES.
	if got, want := delta(after, before, sandbox.EstateGuruInvestments), 3; got != want {
		t.Fatalf("data requests = %d, want %d", got, want)
	}
}

func TestLostRefreshAnswer(t *testing.T) {
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	egToken := w.storedRefreshToken("eg")
	// Both token endpoints process the refresh, then drop the connection.
	// EstateGuru has rotated the token by then; EverReal never rotates.
	w.sb.Inject(sandbox.EstateGuruToken, sandbox.Fault{DropAfterProcessing: true})
	w.sb.Inject(sandbox.EverRealToken, sandbox.Fault{DropAfterProcessing: true})
	before := w.sb.Stats()
	w.mustRun(1, "", "-once")
	after := w.sb.Stats()

	// EstateGuru: asked again at once with the same token, which it refuses
	// as rotated. The connection needs a person, and says why.
	if got, want := w.sb.RefreshUses(egToken), 2; got != want {
		t.Fatalf("the token was presented %d times, want %d (the lost refresh and one retry)", got, want)
	}
	w.failedWith("eg", "invalid_grant", "answer to the previous attempt was lost", "rotated", "syncer connect")
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'eg'"), "reauth_required"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	w.previousSnapshotIntact()

	// EverReal: the retry at once gets fresh tokens; the connection syncs.
	if got, want := after.EverRealTokenRequests-before.EverRealTokenRequests, 2; got != want {
		t.Fatalf("EverReal token requests = %d, want %d", got, want)
	}
	w.otherSynced("er")

	// The refused token is never presented again.
	refused := w.sb.Stats().RefusedRefresh
	w.mustRun(1, "", "-once")
	if got := w.sb.Stats().RefusedRefresh; got != refused {
		t.Fatalf("refused refreshes went from %d to %d: a dead token was presented again", refused, got)
	}
	w.otherSynced("er")
}

func TestKilledMidRunThenCleanNextRun(t *testing.T) {
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	// The data call after the refresh waits a minute: the process is
	// killed in it, after the rotation and before any snapshot.
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Delay: time.Minute})
	before := w.sb.Stats()
	cmd, out := w.spawn("-once")
	w.waitFor("the data call of the run to be killed", func() bool {
		st := w.sb.Stats()
		return delta(st, before, sandbox.EstateGuruInvestments) > 0
	})
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup at all
		t.Fatal(err)
	}
	_ = cmd.Wait()
	w.noSecrets(out.String())
	if got := w.sb.Stats().EstateGuruTokenRequests - before.EstateGuruTokenRequests; got != 1 {
		t.Fatalf("EstateGuru token requests before the kill = %d, want 1 (the rotation)", got)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "running"; got != want {
		t.Fatalf("the killed run's status = %q, want %q until the next start", got, want)
	}
	w.previousSnapshotIntact()

	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "interrupted") {
		t.Fatalf("the next run should say it closed the killed run:\n%s", res)
	}
	// The token rotated in the killed run was durable: the next run
	// refreshed with it, not with the one it replaced.
	if st := w.sb.Stats(); st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh reuse = %d, refused = %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
	if got, want := w.queryInt("SELECT count(*) FROM sync_runs WHERE status = 'running' OR finished_at IS NULL"), int64(0); got != want {
		t.Fatalf("runs still looking open = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1 OFFSET 1"), "interrupted"; got != want {
		t.Fatalf("the killed run's status = %q, want %q", got, want)
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
}

func TestCorruptSnapshotsDatabase(t *testing.T) {
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	tokensBefore := w.fileHash(store.TokensFile)
	path := filepath.Join(w.dataDir, store.SnapshotsFile)
	w.corrupt(path)

	before := w.sb.Stats()
	for _, args := range [][]string{{"-once"}, {"status"}} {
		res := w.mustRun(1, "", args...)
		if !strings.Contains(res.stderr, path) || !strings.Contains(res.stderr, "damaged") {
			t.Fatalf("syncer %s should name %s and say it is damaged:\n%s", args[0], path, res)
		}
	}
	after := w.sb.Stats()
	if got := after.EstateGuruTokenRequests + after.EverRealTokenRequests - before.EstateGuruTokenRequests - before.EverRealTokenRequests; got != 0 {
		t.Fatalf("%d token requests were made with a store that cannot record them", got)
	}
	if got := w.fileHash(store.TokensFile); got != tokensBefore {
		t.Fatal("tokens.db changed")
	}
}

func TestCorruptTokensDatabase(t *testing.T) {
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	path := filepath.Join(w.dataDir, store.TokensFile)
	w.corrupt(path)
	before := w.sb.Stats()
	res := w.mustRun(1, "", "-once")
	if !strings.Contains(res.stderr, path) || !strings.Contains(res.stderr, "damaged") {
		t.Fatalf("syncer should name %s and say it is damaged:\n%s", path, res)
	}
	after := w.sb.Stats()
	if got := after.EstateGuruTokenRequests + after.EverRealTokenRequests - before.EstateGuruTokenRequests - before.EverRealTokenRequests; got != 0 {
		t.Fatalf("%d token requests were made without a vault to save to", got)
	}
	w.previousSnapshotIntact()
}

func TestVaultThatCannotTakeAWriteIsNotRefreshed(t *testing.T) {
	t.Parallel()
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	// A short busy timeout: each connection's write check waits it out.
	w.env = append(w.env, "SYNCER_BUSY_TIMEOUT=200ms")
	// Another process holds tokens.db's write lock past syncer's busy
	// timeout: a rotated token could not be saved, so no refresh may be
	// asked for. (A full disk or a file turned read-only fails the same
	// write; this one can be made without root.)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, store.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	before := w.sb.Stats()
	w.mustRun(1, "", "-once")
	after := w.sb.Stats()
	if got := after.EstateGuruTokenRequests + after.EverRealTokenRequests - before.EstateGuruTokenRequests - before.EverRealTokenRequests; got != 0 {
		t.Fatalf("%d refreshes were asked for with a vault that could not save them", got)
	}
	for _, name := range []string{"eg", "er"} {
		w.failedWith(name, "not refreshing", store.TokensFile)
		if got, want := w.queryString("SELECT state FROM connections WHERE name = ?", name), "active"; got != want {
			t.Fatalf("%s: state = %q, want %q", name, got, want)
		}
	}
	w.previousSnapshotIntact()

	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	w.mustRun(0, "", "-once")
	if st := w.sb.Stats(); st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh reuse = %d, refused = %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
}

func TestReadOnlyDataDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only directories; run the tests as an ordinary user to cover this")
	}
	w := faultWorld(t, sandbox.Options{AccessTTL: time.Second})
	if err := os.Chmod(w.dataDir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(w.dataDir, 0o750) })
	before := w.sb.Stats()
	res := w.mustRun(1, "", "-once")
	if !strings.Contains(res.stderr, w.dataDir) || !strings.Contains(res.stderr, "SYNCER_DATA_DIR") {
		t.Fatalf("syncer should name the data directory and SYNCER_DATA_DIR:\n%s", res)
	}
	after := w.sb.Stats()
	if got := after.EstateGuruTokenRequests + after.EverRealTokenRequests - before.EstateGuruTokenRequests - before.EverRealTokenRequests; got != 0 {
		t.Fatalf("%d token requests were made with a data directory that cannot be written", got)
	}
}

// runMeasured runs the binary like run and also returns its peak resident
// memory in bytes.
func (w *world) runMeasured(args ...string) (result, int64) {
	w.t.Helper()
	res, ps := w.runProcess("", args...)
	var maxRSS int64
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return res, maxRSS
}

// spawn starts the binary without waiting for it; the test kills it.
func (w *world) spawn(args ...string) (*exec.Cmd, *bytes.Buffer) {
	w.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = w.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out
}

// waitFor polls cond for up to 30 seconds.
func (w *world) waitFor(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storedRefreshToken reads a connection's refresh token from the vault
// (stored unencrypted in these tests).
func (w *world) storedRefreshToken(name string) string {
	w.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, store.TokensFile)+"?mode=ro")
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	var tok string
	if err := db.QueryRow("SELECT refresh_token FROM token WHERE connection_name = ?", name).Scan(&tok); err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// fileHash is the SHA-256 of a data file and its WAL, if any.
func (w *world) fileHash(name string) [32]byte {
	w.t.Helper()
	h := sha256.New()
	for _, p := range []string{name, name + "-wal"} {
		b, err := os.ReadFile(filepath.Join(w.dataDir, p))
		if err != nil && !os.IsNotExist(err) {
			w.t.Fatal(err)
		}
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// corrupt overwrites a database's header with garbage, as a failing disk or
// a stray write would, and drops its WAL (a clean exit leaves none).
func (w *world) corrupt(path string) {
	w.t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("garbage!"), 64), 0); err != nil {
		w.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		w.t.Fatal(err)
	}
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
}
