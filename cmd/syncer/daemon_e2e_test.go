package main

// The daemon end to end: the real binary on a one-second schedule, `-once`
// runs beside it, systemd's notify protocol on a socket of the test's own,
// and signals.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net"
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
	"golang.org/x/sys/unix"
)

// TestDaemonAndOnceNeverPresentARefreshTokenTwice runs `-once` twice at a
// time beside the daemon while every run must refresh and EstateGuru rotates
// on every refresh; then stops the daemon with SIGTERM while a provider is
// slow to answer.
func TestDaemonAndOnceNeverPresentARefreshTokenTwice(t *testing.T) {
	// One-second access tokens make every run refresh; the latency makes
	// the processes' runs overlap.
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second, Latency: 30 * time.Millisecond})
	for _, name := range []string{"inv-a", "inv-b"} {
		addSampleInvestor(w.sb, name)
		w.importEstateGuru(name, name)
	}

	notes := listenNotify(t)
	d := startDaemon(t, w, "SYNCER_SCHEDULE=@every 1s",
		"NOTIFY_SOCKET="+notes.path, "WATCHDOG_USEC=300000")
	notes.wait(t, d, "READY=1")

	for round := 0; round < 3; round++ {
		var wg stdsync.WaitGroup
		results := make([]result, 2)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = runBinary(w.environ(), "", "-once")
			}()
		}
		wg.Wait()
		for _, res := range results {
			if res.code != 0 {
				t.Fatalf("syncer -once beside the daemon: %s", res)
			}
			w.noSecrets(res.stdout + res.stderr)
		}
	}
	reports := w.reports()
	waitUntil(t, d, "three scheduled runs", func() bool {
		var n int
		err := reports.QueryRow("SELECT count(*) FROM sync_runs WHERE trigger = 'schedule' AND status = 'ok'").Scan(&n)
		return err == nil && n >= 3
	})
	notes.wait(t, d, "WATCHDOG=1")

	// From now on EstateGuru answers nothing for a minute; SIGTERM once a
	// run is waiting for it.
	investments := string(sandbox.EstateGuruInvestments)
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Delay: time.Minute, Times: 1000})
	before := w.sb.Stats().Requests[investments]
	waitUntil(t, d, "a run to wait on the slow provider", func() bool {
		return w.sb.Stats().Requests[investments] > before
	})
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// TimeoutStopSec is 30s in our unit; the daemon promises about 10s.
	if got, want := d.waitExit(t, 20*time.Second), 0; got != want {
		t.Fatalf("exit code after SIGTERM = %d, want %d\n%s", got, want, d.stderr)
	}
	w.noSecrets(d.stderr.String())
	for _, line := range []string{"stopping: cancelling the run in progress", "scheduler stopped"} {
		if !strings.Contains(d.stderr.String(), line) {
			t.Errorf("the log lacks %q:\n%s", line, d.stderr)
		}
	}
	notes.wait(t, d, "STOPPING=1")

	if got, want := w.queryInt("SELECT count(*) FROM sync_runs WHERE finished_at IS NULL"), int64(0); got != want {
		t.Fatalf("unfinished runs = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs WHERE trigger = 'schedule' ORDER BY id DESC LIMIT 1"), "interrupted"; got != want {
		t.Fatalf("the last scheduled run's status = %q, want %q", got, want)
	}
	if got := w.queryString("SELECT group_concat(DISTINCT status) FROM sync_runs WHERE status NOT IN ('ok', 'interrupted')"); got != "" {
		t.Fatalf("runs that were neither ok nor interrupted: %s\n%s", got, d.stderr)
	}
	checkIntegrity(t, w)

	st := w.sb.Stats()
	if st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh tokens presented again = %d, refused = %d; want 0 and 0\n%s", st.RefreshReuse, st.RefusedRefresh, d.stderr)
	}
	// import + 6 -once + at least 3 scheduled runs, per connection.
	if got, min := st.EstateGuruTokenRequests, 2*(1+6+3); got < min {
		t.Fatalf("EstateGuru token requests = %d, want at least %d: the runs did not all refresh", got, min)
	}
	// The tokens in the vault are the live ends of the rotation chains:
	// never presented yet.
	for name, tok := range storedRefreshTokens(t, w) {
		if got, want := w.sb.RefreshUses(tok), 0; got != want {
			t.Fatalf("%s: the stored refresh token was presented %d times, want %d", name, got, want)
		}
	}
}

// TestDaemonSecondSignalExitsAtOnce: a stop that cannot finish (its database
// write waits for a lock this test holds) gives way to a second signal, and
// the next process closes the run left open.
func TestDaemonSecondSignalExitsAtOnce(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Delay: time.Minute})

	d := startDaemon(t, w, "SYNCER_SCHEDULE=@every 1h")
	waitUntil(t, d, "the start-up run to wait on the slow provider", func() bool {
		return w.sb.Stats().Requests[string(sandbox.EstateGuruInvestments)] > 0
	})

	// Hold snapshots.db's write lock, so recording the interrupted run
	// waits (for the 10s busy timeout).
	db, err := sql.Open("sqlite", store.DSN(filepath.Join(w.dataDir, store.SnapshotsFile), []string{"busy_timeout(5000)"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, d, "the daemon to start stopping", func() bool {
		return strings.Contains(d.stderr.String(), "stopping: cancelling the run in progress")
	})
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Within the 10s busy timeout the first stop is stuck on.
	if got, want := d.waitExit(t, 8*time.Second), 130; got != want {
		t.Fatalf("exit code after a second signal = %d, want %d\n%s", got, want, d.stderr)
	}
	if !strings.Contains(d.stderr.String(), "second signal, exiting now") {
		t.Fatalf("the second signal's exit is not explained:\n%s", d.stderr)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	// The next process marks the run the killed one left open.
	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "marked runs left open by a stopped process as interrupted") {
		t.Fatalf("the open run was not reported:\n%s", res)
	}
	if got, want := w.queryInt("SELECT count(*) FROM sync_runs WHERE finished_at IS NULL"), int64(0); got != want {
		t.Fatalf("unfinished runs = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs WHERE trigger = 'schedule'"), "interrupted"; got != want {
		t.Fatalf("the killed daemon's run status = %q, want %q", got, want)
	}
	checkIntegrity(t, w)
}

// TestDaemonRefusesABadScheduleBeforeTouchingTheDataDir: exit 2, the
// variable and an example named, no data directory.
func TestDaemonRefusesABadScheduleBeforeTouchingTheDataDir(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	for _, tc := range []struct{ env, want, example string }{
		{"SYNCER_SCHEDULE=every hour", `SYNCER_SCHEDULE: "every hour" is not a cron spec`, `"@every 1h"`},
		{"SYNCER_SCHEDULE=61 * * * *", `SYNCER_SCHEDULE: "61 * * * *" is not a cron spec`, `"@every 1h"`},
		{"SYNCER_SCHEDULE=@every 500ms", `SYNCER_SCHEDULE: "@every 500ms" is not a cron spec`, `"@every 1h"`},
		{"SYNCER_SCHEDULE=CRON_TZ=UTC", `SYNCER_SCHEDULE: "CRON_TZ=UTC" is not a cron spec`, `"@every 1h"`},
		{"SYNCER_LOCK_TIMEOUT=soon", `SYNCER_LOCK_TIMEOUT: "soon" is not a duration`, `"30s"`},
	} {
		w.env = []string{tc.env}
		res := w.mustRun(2, "")
		if !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, tc.example) {
			t.Errorf("%s: stderr should contain %q and the example %s:\n%s", tc.env, tc.want, tc.example, res)
		}
		if _, err := os.Stat(w.dataDir); !os.IsNotExist(err) {
			t.Fatalf("%s: the data directory was created", tc.env)
		}
	}
}

// TestDaemonFailsClearlyWhenTheStoreCannotOpen: the data directory is a
// file; the daemon says so, exits 1 and never reports READY.
func TestDaemonFailsClearlyWhenTheStoreCannotOpen(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	if err := os.WriteFile(w.dataDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	notes := listenNotify(t)
	w.env = []string{"NOTIFY_SOCKET=" + notes.path}
	res := w.mustRun(1, "")
	if !strings.Contains(res.stderr, w.dataDir) || !strings.Contains(res.stderr, "not a directory") {
		t.Fatalf("the error should name the data directory and why:\n%s", res)
	}
	if got := notes.all(); strings.Contains(got, "READY=1") {
		t.Fatalf("READY=1 sent by a daemon that could not start: %q", got)
	}
}

// TestOnceGivesUpOnAHeldLockAndSaysWhy: another process holds the
// connection's lock; -once waits SYNCER_LOCK_TIMEOUT, presents no refresh
// token, and says why it gave up.
func TestOnceGivesUpOnAHeldLockAndSaysWhy(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	id := w.queryInt("SELECT connection_id FROM connections WHERE name = 'eg'")
	before := w.sb.Stats().EstateGuruTokenRequests

	unlock := holdConnectionLock(t, w.dataDir, int64(id))
	w.env = []string{"SYNCER_LOCK_TIMEOUT=300ms"}
	res := w.mustRun(1, "", "-once")
	for _, want := range []string{"another syncer process is syncing this connection", "SYNCER_LOCK_TIMEOUT"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr should say %q:\n%s", want, res)
		}
	}
	if got, want := w.sb.Stats().EstateGuruTokenRequests-before, 0; got != want {
		t.Fatalf("token requests while locked out = %d, want %d", got, want)
	}
	unlock()
	w.mustRun(0, "", "-once")
}

// TestWatchdogPingsOnlyWhileHealthy drives the watchdog one check at a time:
// a failing check sends nothing, a passing one sends WATCHDOG=1.
func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan struct{})
	answers := make(chan error)
	var mu stdsync.Mutex
	var sent []string
	notified := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), sent...)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchdog(ctx, slog.New(slog.DiscardHandler), 3*time.Millisecond,
			func(ctx context.Context) error {
				select {
				case asked <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case err := <-answers:
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			},
			func(state string) { mu.Lock(); sent = append(sent, state); mu.Unlock() })
	}()
	// The watchdog is one goroutine: when it asks again, it has done all it
	// would after the previous answer.
	check := func(answer error, want int) {
		t.Helper()
		select {
		case <-asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the watchdog stopped checking")
		}
		if got := len(notified()); got != want {
			t.Fatalf("pings = %d, want %d (%v)", got, want, notified())
		}
		answers <- answer
	}
	check(errors.New("database does not answer"), 0)
	check(errors.New("scheduler does not answer"), 0)
	check(nil, 0)
	check(nil, 1)
	check(errors.New("database does not answer"), 2)
	check(nil, 2)
	cancel()
	<-done
	for _, s := range notified() {
		if s != "WATCHDOG=1" {
			t.Fatalf("sent %q, want only WATCHDOG=1", s)
		}
	}
}

// daemonProc is the binary running without a subcommand.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

func startDaemon(t *testing.T, w *world, env ...string) *daemonProc {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(w.environ(), env...)
	d := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = d.stderr, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// waitExit returns the exit code, or fails the test (and kills the daemon)
// if it has not exited within the bound.
func (d *daemonProc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Fatalf("the daemon did not exit within %s\n%s", within, d.stderr)
		return -1
	}
}

// waitUntil polls cond; it fails the test if the daemon exits first or the
// bound passes, so a hang fails rather than blocks.
func waitUntil(t *testing.T, d *daemonProc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case <-d.exited:
			t.Fatalf("the daemon exited (%v) while waiting for %s\n%s", d.cmd.ProcessState, what, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s\n%s", what, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runBinary is w.run without the testing.T, for goroutines.
func runBinary(env []string, stdin string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		res.code, res.stderr = -1, res.stderr+err.Error()
	}
	return res
}

// notifySocket plays systemd's side of sd_notify.
type notifySocket struct {
	path string
	mu   stdsync.Mutex
	got  []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// Short: a socket path is limited to 108 bytes, t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.got, "\n")
}

func (n *notifySocket) wait(t *testing.T, d *daemonProc, state string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(n.all(), state) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s from the daemon (got %q)\n%s", state, n.all(), d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkIntegrity runs PRAGMA integrity_check on both databases, read-only.
func checkIntegrity(t *testing.T, w *world) {
	t.Helper()
	for _, name := range []string{store.SnapshotsFile, store.TokensFile} {
		db, err := sql.Open("sqlite", store.DSN(filepath.Join(w.dataDir, name), []string{"busy_timeout(5000)"}, map[string][]string{"mode": {"ro"}}))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = db.QueryRow("PRAGMA integrity_check").Scan(&got)
		db.Close()
		if err != nil {
			t.Fatalf("%s: integrity_check: %v", name, err)
		}
		if got != "ok" {
			t.Fatalf("%s: integrity_check = %q, want ok", name, got)
		}
	}
}

// storedRefreshTokens reads each connection's refresh token from the vault,
// once no syncer runs.
func storedRefreshTokens(t *testing.T, w *world) map[string]string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, w.dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conns, err := st.Connections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range conns {
		tok, err := st.Token(ctx, c.ID)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		out[c.Name] = tok.Refresh.Reveal()
	}
	return out
}

// holdFlock takes the lock another syncer process would hold.
// holdConnectionLock takes a connection's refresh lock as another syncer
// process would: its byte of locks/connections.lock, through a file
// description of this process's own.
func holdConnectionLock(t *testing.T, dataDir string, id int64) (unlock func()) {
	t.Helper()
	dir := filepath.Join(dataDir, "locks")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, store.ConnectionLocksFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_WRLCK, Start: id, Len: 1}); err != nil {
		t.Fatal(err)
	}
	var once stdsync.Once
	unlock = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(unlock)
	return unlock
}

// syncBuffer is a bytes.Buffer safe for the child's writes and the test's
// reads.
type syncBuffer struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
