package monitor

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// exported gathers the names of the metrics a populated registry exports:
// what MetricNames claims is checked against what is really there.
func exported(t *testing.T) []string {
	t.Helper()
	m := NewMetrics()
	now := time.Now()
	m.SetConnections([]Connection{{Name: "acme", Provider: "everreal", Up: true, LastSuccess: now, RefreshExpiry: now.Add(time.Hour)}})
	m.RunFinished(Run{Finished: now, Duration: time.Second, OK: true,
		Results: []SyncResult{{Provider: "everreal", Result: "ok"}}, RowsWritten: map[string]int64{"everreal": 3}})
	m.Request("everreal", "refresh", 200)
	m.Retry("everreal", "refresh")
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	return names
}

func TestMetricNamesAreThoseExported(t *testing.T) {
	got := exported(t)
	want := slices.Clone(MetricNames)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("exported %v\nMetricNames %v", got, want)
	}
	for _, n := range got {
		if !strings.HasPrefix(n, "syncer_") {
			t.Fatalf("%s does not start with syncer_", n)
		}
	}
}

func TestLabelsAreFixedAndFew(t *testing.T) {
	m := NewMetrics()
	m.SetConnections([]Connection{{Name: "a", Provider: "everreal", RefreshExpiry: time.Now(), LastSuccess: time.Now()}})
	m.RunFinished(Run{Finished: time.Now(), Results: []SyncResult{{Provider: "everreal", Result: "failed"}}, RowsWritten: map[string]int64{"everreal": 1}})
	m.Request("everreal", "me", 0)
	m.Retry("everreal", "me")
	fams, _ := m.Registry().Gather()
	allowed := map[string]bool{"connection": true, "provider": true, "op": true, "result": true, "code": true}
	for _, f := range fams {
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if !allowed[l.GetName()] {
					t.Fatalf("%s has label %q", f.GetName(), l.GetName())
				}
			}
		}
	}
}

// TestMonitoringFolderUsesOnlyExportedMetrics: every syncer_ metric the
// alert rules and the dashboard name is one syncer exports.
func TestMonitoringFolderUsesOnlyExportedMetrics(t *testing.T) {
	have := map[string]bool{}
	for _, n := range exported(t) {
		have[n] = true
	}
	name := regexp.MustCompile(`\bsyncer_[a-z0-9_]+`)
	files := 0
	used := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("..", "monitoring"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range name.FindAllString(string(b), -1) {
			if !have[n] {
				t.Errorf("%s uses %s, which syncer does not export", path, n)
			}
			used[n] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("found %d files in monitoring/, want the rules and the dashboard", files)
	}
	for _, n := range []string{"syncer_connection_needs_reauth", "syncer_connection_last_success_timestamp_seconds",
		"syncer_connection_refresh_token_expiry_timestamp_seconds", "syncer_last_run_timestamp_seconds"} {
		if !used[n] {
			t.Errorf("the alert rules should use %s", n)
		}
	}
}

func TestWriteFileIsAtomicAndParsable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "syncer.prom")
	m := NewMetrics()
	m.SetConnections([]Connection{{Name: "acme", Provider: "everreal", NeedsReauth: true}})
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `syncer_connection_needs_reauth{connection="acme",provider="everreal"} 1`) {
		t.Fatalf("file:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left in the directory: %v, want only the metrics file", entries)
	}
	if err := CheckFileDir(filepath.Join(path, "x.prom")); err == nil {
		t.Fatal("a file as the directory should be refused")
	}
}

func TestListenAddrIsLoopbackUnlessNamed(t *testing.T) {
	for in, want := range map[string]string{":9464": "127.0.0.1:9464", "0.0.0.0:9464": "0.0.0.0:9464", "[::1]:1": "[::1]:1"} {
		got, err := ListenAddr(in)
		if err != nil || got != want {
			t.Fatalf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"9464", "host:", "host:port"} {
		if _, err := ListenAddr(bad); err == nil {
			t.Fatalf("ListenAddr(%q) should fail", bad)
		}
	}
}

// TestChangesAnnounceEachTransitionOnce walks a connection through its
// life: each transition is due once; once stored, it is not due again.
func TestChangesAnnounceEachTransitionOnce(t *testing.T) {
	now := time.Now()
	exp := now.Add(24 * time.Hour)
	steps := []struct {
		c    ConnState
		want []string
	}{
		{ConnState{State: "active"}, nil},
		{ConnState{State: "active", Failures: 1}, nil},
		{ConnState{State: "active", Failures: 3}, []string{EventFailing}},
		{ConnState{State: "active", Failures: 4}, nil},
		{ConnState{State: "reauth_required", Failures: 5}, []string{EventReauthRequired}},
		{ConnState{State: "reauth_required", Failures: 5}, nil},
		{ConnState{State: "active", Failures: 1}, nil}, // re-connected, failed once: not recovered yet
		{ConnState{State: "active"}, []string{EventRecovered}},
		{ConnState{State: "active", RefreshWarn: true, RefreshExpiry: exp}, []string{EventRefreshExpiring}},
		{ConnState{State: "active", RefreshWarn: true, RefreshExpiry: exp}, nil},
		{ConnState{State: "active", RefreshWarn: true, RefreshExpiry: exp.Add(time.Hour)}, []string{EventRefreshExpiring}},
		{ConnState{State: "disconnected"}, nil},
	}
	var ann Announced
	for i, st := range steps {
		st.c.Name, st.c.Provider = "acme", "everreal"
		var got []string
		for _, ch := range Changes(st.c, ann, 3, now, "host") {
			got = append(got, ch.Event.Event)
			if ch.Event.Connection != "acme" || ch.Event.Message == "" || ch.Event.Time == "" {
				t.Fatalf("step %d: incomplete event %+v", i, ch.Event)
			}
			if ch.Event.Event == EventRefreshExpiring {
				ann.RefreshWarnedFor = ch.Next.RefreshWarnedFor
			} else {
				ann.Condition = ch.Next.Condition
			}
		}
		if !slices.Equal(got, st.want) {
			t.Fatalf("step %d (%+v): events %v, want %v", i, st.c, got, st.want)
		}
	}
}

func TestURLErrorsNeverQuoteSecrets(t *testing.T) {
	const secret = "s3cr3t-token-value"
	_, err := ParseNotifyURLs("ntfy://ntfy.sh/topic-one nosuch://user:" + secret + "@host/" + secret)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("error = %v", err)
	}
	if err := CheckURL("ftp://user:" + secret + "@host/"); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error = %v", err)
	}
	if got := RedactedURL("https://user:" + secret + "@hc-ping.com/" + secret); strings.Contains(got, secret) {
		t.Fatalf("RedactedURL = %q", got)
	}
}

func TestHealthzFollowsTheCheck(t *testing.T) {
	m := NewMetrics()
	var failing atomic.Bool
	srv, err := m.Listen("127.0.0.1:0", func(context.Context) error {
		if failing.Load() {
			return errors.New("database does not answer")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	get := func(path string) int {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/healthz"); got != 200 {
		t.Fatalf("/healthz = %d, want 200", got)
	}
	failing.Store(true)
	if got := get("/healthz"); got != 503 {
		t.Fatalf("/healthz while the check fails = %d, want 503", got)
	}
	if got := get("/metrics"); got != 200 {
		t.Fatalf("/metrics = %d, want 200", got)
	}
	if _, err := m.Listen(srv.Addr(), nil); err == nil {
		t.Fatal("a second listener on the same address should fail")
	}
}
