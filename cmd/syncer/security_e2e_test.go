package main

// End-to-end tests of issue 12: a tampered file, a hostile answer or a
// careless path leaks nothing.

import (
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"

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
