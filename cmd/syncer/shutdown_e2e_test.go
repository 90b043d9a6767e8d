package main

import (
	"bytes"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/syncerhq/syncer/sync/sandbox"
)

// A SIGTERM that arrives while a refresh is on the wire must not lose the
// rotated token: the grant is seen through and saved, the run is recorded as
// interrupted, and the next run works with the saved token.
func TestSigtermDuringRefreshKeepsRotatedToken(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	before := w.sb.Stats().EstateGuruTokenRequests

	w.sb.Inject(sandbox.EstateGuruToken, sandbox.Fault{SlowAnswer: 1500 * time.Millisecond})
	cmd := exec.Command(binary, "-once")
	cmd.Env = w.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for w.sb.Stats().EstateGuruTokenRequests == before {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the refresh never reached the provider:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("-once after SIGTERM: %v, want exit 0:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("-once did not stop within 15s of SIGTERM:\n%s", stderr.String())
	}
	w.noSecrets(stderr.String())

	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "interrupted"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'eg'"), "active"; got != want {
		t.Fatalf("state = %q, want %q (an interrupted connection has not failed)", got, want)
	}
	if got := w.queryString("SELECT coalesce(last_error, '') FROM connections WHERE name = 'eg'"); got != "" {
		t.Fatalf("last_error = %q, want none", got)
	}

	w.mustRun(0, "", "-once")
	if st := w.sb.Stats(); st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh reuse = %d, refused = %d after the interrupted refresh; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
}
