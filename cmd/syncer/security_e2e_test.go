package main

// End-to-end tests of issue 12: a tampered file, a hostile answer or a
// careless path leaks nothing.

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// tamper runs SQL on snapshots.db as someone who can write that file would.
func (w *world) tamper(q string, args ...any) {
	w.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, store.SnapshotsFile))
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
}

// recorder is a loopback server that records every request it gets.
type recorder struct {
	*httptest.Server
	mu   stdsync.Mutex
	seen []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.String()+" "+req.Header.Get("Authorization")+" "+string(b))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"evil-access","refresh_token":"evil-refresh","expires_in":3600}`)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// Finding 1: base_url in snapshots.db does not steer the secrets.
func TestTamperedBaseURLSendsNothing(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEverReal("er", "jo@example.com")
	w.importEstateGuru("eg", "inv")
	before := map[string]string{"er": w.storedRefreshToken("er"), "eg": w.storedRefreshToken("eg")}
	evil := newRecorder(t)

	for _, target := range []string{evil.URL, "http://192.0.2.2:18081"} {
		w.tamper("UPDATE connection SET base_url = ?", target)
		res := w.mustRun(1, "", "-once")
		w.noSecrets(res.stderr, before["er"], before["eg"])
		if !strings.Contains(res.stderr, "refusing to sync") || !strings.Contains(res.stderr, "syncer connect") {
			t.Fatalf("want a refusal saying how to re-connect:\n%s", res)
		}
		if got := evil.requests(); len(got) != 0 {
			t.Fatalf("the URL from snapshots.db got requests: %q", got)
		}
		for name, tok := range before {
			if got := w.storedRefreshToken(name); got != tok {
				t.Fatalf("%s: stored refresh token changed", name)
			}
			if got := w.queryString("SELECT state FROM connections WHERE name = ?", name); got != "active" {
				t.Fatalf("%s: state = %q, want active (putting the URL back is enough)", name, got)
			}
		}
	}

	// Put back, the connections sync again.
	w.tamper("UPDATE connection SET base_url = ? WHERE name = 'er'", w.sb.EverRealURL)
	w.tamper("UPDATE connection SET base_url = ? WHERE name = 'eg'", w.sb.EstateGuruURL)
	w.mustRun(0, "", "-once")
}

// Finding 12: a root run against the service's data directory is refused
// before anything is created there, with the commands that run it right.
func TestARunAsAnotherUserIsRefusedWithTheCommandThatWorks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the data directory to another user")
	}
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	if err := filepath.Walk(w.dataDir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
	res := w.mustRun(2, "", "-once")
	for _, want := range []string{"sudo -u ", "systemd-run", "User=", "syncer -once"} {
		if !strings.Contains(res.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, res)
		}
	}
	if err := filepath.Walk(w.dataDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 {
			t.Errorf("%s belongs to uid %d after the refused run", p, st.Uid)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Finding 2: started from a directory other users may write to (such as
// /tmp) without SYNCER_DATA_DIR, syncer refuses the default there; under
// systemd the default is $STATE_DIRECTORY.
func TestDefaultDataDirectory(t *testing.T) {
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	t.Chdir(shared)
	t.Setenv("SYNCER_DATA_DIR", "")
	os.Unsetenv("SYNCER_DATA_DIR")
	t.Setenv("STATE_DIRECTORY", "")
	_, err := loadConfig()
	if err == nil || !strings.Contains(err.Error(), "SYNCER_DATA_DIR") || !strings.Contains(err.Error(), "other users") {
		t.Fatalf("loadConfig in a shared directory = %v, want a refusal naming SYNCER_DATA_DIR", err)
	}
	if _, err := os.Stat(filepath.Join(shared, "syncer-data")); !os.IsNotExist(err) {
		t.Fatalf("syncer-data was created in the shared directory")
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/syncer:/var/lib/other")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.DataDir, "/var/lib/syncer"; got != want {
		t.Fatalf("DataDir = %q, want %q", got, want)
	}
	own := t.TempDir()
	t.Chdir(own)
	t.Setenv("STATE_DIRECTORY", "")
	if c, err = loadConfig(); err != nil || c.DataDir != "./syncer-data" {
		t.Fatalf("in a directory of one's own: %v, %v; want ./syncer-data", c, err)
	}
}

// Finding 4: the running process writes no core file and is not dumpable
// (no ptrace, no /proc/<pid>/mem for its own user). A non-dumpable
// process's /proc/<pid> files belong to root, so the daemon runs here as
// another user (nobody) to tell.
func TestTheProcessIsNotDumpable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	top, err := os.MkdirTemp("", "syncer-dumpable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "syncer")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(top, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SYNCER_DATA_DIR=" + data, "SYNCER_SYNC_ON_START=false", "SYNCER_LOG_LEVEL=debug"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	// The daemon is up (past main's start) once it logs its schedule.
	lines := bufio.NewScanner(out)
	for !strings.Contains(lines.Text(), "scheduler started") {
		if !lines.Scan() {
			t.Fatalf("the daemon did not start")
		}
	}
	go io.Copy(io.Discard, out)
	fi, err := os.Stat(status)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 {
		t.Fatalf("%s belongs to uid %d: the process is dumpable", status, uid)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max core file size") {
			if f := strings.Fields(line); f[4] != "0" || f[5] != "0" {
				t.Fatalf("core limit: %q, want 0 0", line)
			}
		}
	}
}

// Finding 9: names a provider sends come out of -format csv unable to run
// as spreadsheet formulas (unless -csv-raw), and out of the table without
// terminal escape sequences.
func TestQueryOutputNeutralisesHostileNames(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	const formula = `=HYPERLINK("http://192.0.2.9/x","open")`
	const escape = "Tiny\x1b]0;pwned\x07\x1b[2J\u202e"
	w.sb.AddEstateGuruInvestor(sandbox.Investor{
		Name: "inv", Currency: "EUR", Cash: "1.00",
		Investments: []sandbox.Investment{
			{Name: formula, Quantity: "1", InvestmentAmount: "1.00", MarketValue: "1.00", PrincipalLeft: "1.00",
				Profit: "0.00", RealizedIncome: "0.00", Change: "-0.01", LoanID: "EE1"},
			{Name: escape, Quantity: "1", InvestmentAmount: "1.00", MarketValue: "1.00", PrincipalLeft: "1.00",
				Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE2"},
			{Name: "@SUM(A1)", Quantity: "1", InvestmentAmount: "1.00", MarketValue: "1.00", PrincipalLeft: "1.00",
				Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE3"},
		},
	})
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	q := "SELECT name, change_cents FROM latest_estateguru_investments WHERE loan_id IN ('EE1', 'EE3') ORDER BY loan_id"

	res := w.mustRun(0, "", "query", "-format", "csv", q)
	if got, want := res.stdout, "name,change_cents\r\n\"'=HYPERLINK(\"\"http://192.0.2.9/x\"\",\"\"open\"\")\",-1\r\n'@SUM(A1),0\r\n"; got != want {
		t.Fatalf("csv = %q, want %q (formulas neutralised, numbers as they are)", got, want)
	}
	res = w.mustRun(0, "", "query", "-format", "csv", "-csv-raw", q)
	if !strings.Contains(res.stdout, "\r\n\"=HYPERLINK(") {
		t.Fatalf("-csv-raw should write cells as stored: %q", res.stdout)
	}

	res = w.mustRun(0, "", "query", "SELECT name FROM latest_estateguru_investments WHERE loan_id = 'EE2'")
	if strings.ContainsAny(res.stdout, "\x1b\x07\u202e") {
		t.Fatalf("the table passes control characters through: %q", res.stdout)
	}
	if !strings.Contains(res.stdout, `Tiny\x1b]0;pwned\x07\x1b[2J\u202e`) {
		t.Fatalf("control characters should show as escapes: %q", res.stdout)
	}
}

// Finding 10: a key file other users may read is refused (outside
// $CREDENTIALS_DIRECTORY), and so are weak keys.
func TestTokenKeyFileAndStrength(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	key := writeKey(t)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key}
	res := w.mustRun(2, "", "status")
	if !strings.Contains(res.stderr, "other users") || !strings.Contains(res.stderr, "chmod 600") {
		t.Fatalf("a key file readable by others should be refused:\n%s", res)
	}
	if _, err := os.Stat(w.dataDir); !os.IsNotExist(err) {
		t.Fatalf("the data directory was created before the key was refused")
	}
	// In $CREDENTIALS_DIRECTORY systemd owns the modes: accepted.
	creds := filepath.Dir(key)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key, "CREDENTIALS_DIRECTORY=" + creds}
	w.mustRun(0, "", "-once") // status reads snapshots.db only; -once opens the vault with the key

	for name, content := range map[string]string{
		"all zero":   strings.Repeat("00", 32),
		"repetitive": strings.Repeat("0123", 16),
		"passphrase": "correct horse battery staple!!!!",
	} {
		path := filepath.Join(t.TempDir(), "weak.key")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + path}
		res := w.mustRun(2, "", "status")
		if !strings.Contains(res.stderr, "SYNCER_TOKEN_KEY_FILE") || !(strings.Contains(res.stderr, "weak") || strings.Contains(res.stderr, "passphrase")) {
			t.Fatalf("%s key: want a refusal:\n%s", name, res)
		}
	}
}

// Finding 10: syncer rekey turns encryption on, rotates the key (the old
// one no longer opens anything) and turns it off, losing no token.
func TestRekey(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second}) // every run refreshes
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er", "jo@example.com")
	w.mustRun(0, "", "-once")
	plain := w.storedRefreshToken("eg")

	// On: a plain vault and a new key.
	key1, key2 := writeKey(t), writeKey(t)
	res := w.mustRun(0, "", "rekey", "-new-key", key1)
	if !strings.Contains(res.stdout, "2 connections") {
		t.Fatalf("rekey should say what it did:\n%s", res)
	}
	w.checkpointVault()
	w.noSecretsInFiles(plain)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key1}
	w.mustRun(0, "", "-once")

	// Rotate: the old key opens nothing afterwards.
	w.mustRun(0, "", "rekey", "-new-key", key2)
	res = w.run("", "-once")
	if res.code != 2 || !strings.Contains(res.stderr, "not the key") {
		t.Fatalf("the old key after a rekey: want exit 2, got:\n%s", res)
	}
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key2}
	w.mustRun(0, "", "-once")

	// A weak or exposed new key is refused, nothing changed.
	weak := filepath.Join(t.TempDir(), "weak.key")
	os.WriteFile(weak, []byte(strings.Repeat("00", 32)), 0o600)
	w.mustRun(2, "", "rekey", "-new-key", weak)
	w.mustRun(0, "", "-once")

	// Off.
	w.mustRun(0, "", "rekey", "-remove")
	w.env = nil
	w.mustRun(0, "", "-once")
	if tok := w.storedRefreshToken("eg"); strings.HasPrefix(tok, "gcm") {
		t.Fatalf("the vault is still sealed after -remove")
	}
	w.mustRun(2, "", "rekey")
}

// endlessQuery never ends, and reads a table, so it holds a read transaction.
const endlessQuery = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM sync_runs, c"

// Finding 11: a query that would never end is interrupted at -timeout, so
// its read transaction does not pin the WAL run after run.
func TestQueryTimeout(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	w.mustRun(0, "", "-once") // a row in sync_runs
	start := time.Now()
	res := w.mustRun(1, "", "query", "-timeout", "1s", endlessQuery)
	if !strings.Contains(res.stderr, "stopped after 1s") || !strings.Contains(res.stderr, "-timeout") {
		t.Fatalf("want the timeout explained:\n%s", res)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the query ran %s", d)
	}
	w.mustRun(2, "", "query", "-timeout", "-1s", "SELECT 1")
}

// Finding 11: the checkpoint at the end of a run names the reader that
// keeps the WAL from being truncated.
func TestCheckpointNamesTheReaderHoldingTheWAL(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	// A write left in the WAL (this connection stays open, so nothing
	// checkpoints it), then a reader whose snapshot includes it.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, store.SnapshotsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE connection SET updated_at = updated_at"); err != nil {
		t.Fatal(err)
	}
	reader, _ := w.spawn("query", "-timeout", "50s", endlessQuery)
	time.Sleep(time.Second) // the reader's transaction is open
	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "WAL not truncated") || !strings.Contains(res.stderr, fmt.Sprintf("pid %d (", reader.Process.Pid)) {
		t.Fatalf("want a WARN naming the reader (pid %d):\n%s", reader.Process.Pid, res)
	}
	reader.Process.Kill()
	reader.Wait()
}
