package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/syncerhq/syncer/sync/sandbox"
)

// -connection: a name given twice is synced once; an unknown or a
// disconnected one is a usage error that says what exists.
func TestOnceConnectionSelection(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	addSampleInvestor(w.sb, "inv2")
	w.importEstateGuru("eg", "inv")
	w.importEstateGuru("eg2", "inv2")

	w.mustRun(0, "", "-once", "-connection", "eg", "-connection", "eg")
	if got := w.queryInt("SELECT count(*) FROM sync_results WHERE run_id = (SELECT max(id) FROM sync_runs)"); got != 1 {
		t.Fatalf("results of the run = %d, want 1 (eg once)", got)
	}
	res := w.mustRun(exitUsage, "", "-once", "-connection", "nope")
	if !strings.Contains(res.stderr, `"nope"`) || !strings.Contains(res.stderr, "eg, eg2") {
		t.Fatalf("an unknown -connection should be named, with the ones that exist:\n%s", res)
	}
	w.mustRun(0, "", "disconnect", "eg2")
	res = w.mustRun(exitUsage, "", "-once", "-connection", "eg2")
	if !strings.Contains(res.stderr, "disconnected") || !strings.Contains(res.stderr, "syncer connect estateguru -name eg2") {
		t.Fatalf("a disconnected -connection should say how to connect it again:\n%s", res)
	}
}

func TestOnceWithoutConnectionsSaysHowToAddOne(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "no connections yet") || !strings.Contains(res.stderr, "syncer connect") {
		t.Fatalf("-once with nothing to sync should say how to add a connection:\n%s", res)
	}
}

// backup DIR/ writes inside the directory; -tokens FILE copies tokens.db,
// born 0600.
func TestBackupIntoDirectoryWithTokens(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	dir := filepath.Join(t.TempDir(), "backups")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(t.TempDir(), "tokens-copy.db")
	res := w.mustRun(0, "", "backup", dir+"/", "-tokens", tokens)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "snapshots-") {
		t.Fatalf("backup DIR/ should write one snapshots-*.db inside DIR, found %v (%v)\n%s", entries, err, res)
	}
	st, err := os.Stat(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Fatalf("tokens backup mode = %o, want 600", got)
	}
	if !strings.Contains(res.stdout, tokens) {
		t.Fatalf("the output should name the tokens copy:\n%s", res)
	}
	// Never over an existing file.
	w.mustRun(1, "", "backup", filepath.Join(dir, "x.db"), "-tokens", tokens)
}

// A retried call's log line names the connection and why it failed.
func TestRetryLineNamesConnectionAndCause(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	w.env = append(w.env, "SYNCER_RETRY_BACKOFF=1ms")
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Status: 503, Body: "<html>down</html>", ContentType: "text/html"})
	res := w.mustRun(0, "", "-once")
	var line string
	for _, l := range strings.Split(res.stderr, "\n") {
		if strings.Contains(l, "retrying") {
			line = l
		}
	}
	if !strings.Contains(line, "connection=eg") || !strings.Contains(line, "cause=") {
		t.Fatalf("the retry line should name the connection and the cause: %q\n%s", line, res)
	}
	w.noSecrets(res.stderr)
}

// `syncer sandbox -env FILE` keeps both fakes up until stopped, and what it
// writes points syncer at them.
func TestSandboxKeepsRunning(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "sandbox.env")
	w := newWorld(t, sandbox.Options{}) // for the harness only
	cmd, out := w.spawn("sandbox", "-env", envFile)
	w.waitFor("the sandbox's environment file", func() bool { _, err := os.Stat(envFile); return err == nil })
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, l := range strings.Split(string(b), "\n") {
		if kv, ok := strings.CutPrefix(l, "export "); ok {
			env = append(env, kv)
		}
	}
	env = append(env, "SYNCER_DATA_DIR="+filepath.Join(dir, "data"))
	var erURL string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SANDBOX_EVERREAL_URL="); ok {
			erURL = v
		}
	}
	runEnv := func(stdin string, want int, args ...string) string {
		t.Helper()
		c := exec.Command(binary, args...)
		c.Env = env
		c.Stdin = strings.NewReader(stdin)
		o, err := c.CombinedOutput()
		if code := c.ProcessState.ExitCode(); code != want {
			t.Fatalf("syncer %v: exit %d (%v), want %d\n%s", args, code, err, want, o)
		}
		return string(o)
	}
	runEnv("demo-password-anna\n", 0, "connect", "everreal", "-name", "anna", "-url", erURL, "-username", "anna.admin@example.com")
	runEnv("", 0, "connect", "estateguru", "-name", "seed")
	runEnv("", 0, "-once")
	if o := runEnv("", 0, "status"); !strings.Contains(o, "anna") || !strings.Contains(o, "seed") {
		t.Fatalf("status:\n%s", o)
	}

	// Faults through the control the sandbox printed.
	var control string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SANDBOX_CONTROL_URL="); ok {
			control = v
		}
	}
	post := func(path string) {
		t.Helper()
		resp, err := http.Post(control+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
	}
	env = append(env, "SYNCER_RETRY_BACKOFF=1ms")
	post("/fault?endpoint=estateguru-investments&status=503&times=10")
	post("/revoke?provider=everreal&account=anna.admin@example.com")
	runEnv("", 1, "-once")
	o := runEnv("", 1, "status")
	if !strings.Contains(o, "reauth_required") || !strings.Contains(o, "503") {
		t.Fatalf("status after the faults should show anna refused and seed's 503:\n%s", o)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the sandbox should stop cleanly on SIGINT: %v\n%s", err, out)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Fatalf("the environment file should go with the sandbox: %v", err)
	}
}

// connect everreal -web -redirect-url: the redirect URI goes out exactly as
// registered, and the login comes back to that fixed loopback port.
func TestConnectEverRealWebFixedRedirect(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // find a free port, then free it
	if err != nil {
		t.Fatal(err)
	}
	redirect := fmt.Sprintf("http://%s/syncer/cb", ln.Addr())
	ln.Close()
	b := w.start("connect", "everreal", "-web", "-redirect-url", redirect, "-name", "er", "-url", w.sb.EverRealURL)
	authURL := b.waitLine("/accounts/dialog/authorize")
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("redirect_uri"); got != redirect {
		t.Fatalf("redirect_uri = %q, want %q as registered", got, redirect)
	}
	if status, body := browse(t, authURL); status != http.StatusOK || !strings.Contains(body, "logged in") {
		t.Fatalf("the browser got %d %q", status, body)
	}
	if res := b.wait(); res.code != 0 || !strings.Contains(res.stdout, "everreal er: connected") {
		t.Fatalf("connect -web -redirect-url should succeed:\n%s", res)
	}
	// Only with -web, and only to loopback.
	w.mustRunC(2, "", "connect", "everreal", "-redirect-url", redirect, "-name", "er2", "-url", w.sb.EverRealURL, "-username", erEmail)
	w.mustRunC(2, "", "connect", "everreal", "-web", "-redirect-url", "http://example.com:80/cb", "-name", "er3", "-url", w.sb.EverRealURL)
}

// A data directory syncer may not write to is a set-up error: exit 2, the
// path named once, nothing attempted.
func TestUnwritableDataDirExits2(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "locked")
	if err := os.Mkdir(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "data")
	cmd := exec.Command(binary, "-once")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SYNCER_DATA_DIR=" + dataDir}
	if os.Getuid() == 0 {
		// root writes anywhere: run as nobody, for whom 0555 means no.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		// nobody needs to reach the binary and the directory's parent.
		for _, d := range []string{filepath.Dir(binary), filepath.Dir(parent), filepath.Dir(filepath.Dir(parent))} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, _ := cmd.CombinedOutput()
	if got := cmd.ProcessState.ExitCode(); got != exitUsage {
		t.Fatalf("exit %d, want %d\n%s", got, exitUsage, out)
	}
	if n := strings.Count(string(out), dataDir); n != 1 {
		t.Fatalf("the output names %s %d times, want once:\n%s", dataDir, n, out)
	}
}
