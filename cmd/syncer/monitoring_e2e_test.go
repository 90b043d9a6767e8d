package main

// Monitoring end to end: the real binary against the sandbox, with a fake
// systemd notify socket, a local ping and webhook receiver, a notify
// command, the metrics file and the metrics endpoint.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// Canary secrets of the monitoring: the ping check's id and a webhook token.
const (
	canaryPingID    = "CANARY-ping-check-5d1e9a"
	canaryHookToken = "CANARY-hook-token-a7f2c4"
)

// receiver is a local HTTP server standing in for healthchecks.io and a
// webhook service.
type receiver struct {
	srv   *httptest.Server
	mu    stdsync.Mutex
	pings []string // path suffix after the check id: "/start", "", "/fail"
	hooks []string // bodies
	fail  bool     // answer 500 to everything
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case strings.HasPrefix(req.URL.Path, "/ping/"+canaryPingID):
			r.pings = append(r.pings, strings.TrimPrefix(req.URL.Path, "/ping/"+canaryPingID)+" "+string(body))
		case strings.HasPrefix(req.URL.Path, "/hook/"+canaryHookToken):
			r.hooks = append(r.hooks, string(body))
		default:
			http.NotFound(w, req)
			return
		}
		if r.fail {
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) pingURL() string { return r.srv.URL + "/ping/" + canaryPingID }

// notifyURL is the shoutrrr generic webhook URL of the receiver.
func (r *receiver) notifyURL() string {
	return "generic://" + strings.TrimPrefix(r.srv.URL, "http://") + "/hook/" + canaryHookToken + "?disabletls=yes"
}

func (r *receiver) snapshot() (pings, hooks []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.pings...), append([]string(nil), r.hooks...)
}

// countPings counts the pings whose suffix is kind ("/start", "", "/fail").
func (r *receiver) countPings(kind string) int {
	pings, _ := r.snapshot()
	n := 0
	for _, p := range pings {
		if strings.SplitN(p, " ", 2)[0] == kind {
			n++
		}
	}
	return n
}

func (r *receiver) hooksAbout(substr string) int {
	_, hooks := r.snapshot()
	n := 0
	for _, h := range hooks {
		if strings.Contains(h, substr) {
			n++
		}
	}
	return n
}

// events reads the JSON lines the notify command appended.
func readEvents(t *testing.T, path string) []monitor.Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []monitor.Event
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var ev monitor.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("notify command got %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

func countEvents(evs []monitor.Event, kind, conn string) int {
	n := 0
	for _, e := range evs {
		if e.Event == kind && e.Connection == conn {
			n++
		}
	}
	return n
}

// parseMetrics parses a metrics file with Prometheus's own text parser.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, text)
	}
	return fams
}

// metricValue finds the value of name with these labels; ok is false when
// there is no such series.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func readMetricsFile(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseMetrics(t, string(b))
}

func wantMetric(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metricValue(fams, name, labels)
	if !ok {
		t.Fatalf("no %s%v in the metrics", name, labels)
	}
	if got != want {
		t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
	}
}

var addrLine = regexp.MustCompile(`serving /metrics and /healthz.* addr=(\S+)`)

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDaemonMakesAReauthConnectionVisible is the "done when": a
// daemon on a short schedule with one connection refused logs a WARN naming
// it on every run, records partial runs with a skipped sync_results row,
// sends STATUS=, writes a metrics file and serves /metrics and /healthz,
// pings /start then /fail, notifies once per transition across a restart,
// and recovers cleanly after the connection is re-connected.
func TestDaemonMakesAReauthConnectionVisible(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "good")
	addSampleInvestor(w.sb, "acme")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("good", "good")
	w.importEstateGuru("acme", "acme")
	w.importEverReal("er", "jo@example.com")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")

	rcv := newReceiver(t)
	dir := t.TempDir()
	metricsFile := filepath.Join(dir, "textfile", "syncer.prom")
	if err := os.Mkdir(filepath.Dir(metricsFile), 0o755); err != nil {
		t.Fatal(err)
	}
	eventsFile := filepath.Join(dir, "events.jsonl")
	w.env = []string{
		"SYNCER_PING_URL=" + rcv.pingURL(),
		"SYNCER_NOTIFY_URLS=" + rcv.notifyURL(),
		"SYNCER_NOTIFY_COMMAND=cat >> " + eventsFile,
		"SYNCER_METRICS_FILE=" + metricsFile,
	}
	notes := listenNotify(t)
	start := func() *daemonProc {
		d := startDaemon(t, w, "SYNCER_SCHEDULE=@every 1s", "SYNCER_METRICS_ADDR=127.0.0.1:0", "NOTIFY_SOCKET="+notes.path)
		notes.wait(t, d, "READY=1")
		return d
	}
	runsOf := func(status string) int64 {
		return w.queryInt("SELECT count(*) FROM sync_runs WHERE trigger = 'schedule' AND status = ?", status)
	}
	d := start()
	waitUntil(t, d, "two partial scheduled runs", func() bool { return runsOf("partial") >= 2 })
	notes.wait(t, d, "STATUS=last run")
	// What a run reports follows its record: wait for the second run's.
	waitUntil(t, d, "the second run's metrics and pings", func() bool {
		v, _ := metricValue(readMetricsFile(t, metricsFile), "syncer_syncs_total", map[string]string{"provider": "estateguru", "result": "skipped"})
		return v >= 1 && rcv.countPings("/fail") >= 2
	})

	// A WARN naming the connection, on every run.
	warns := 0
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "needs re-login") && strings.Contains(line, "connection=acme") {
			warns++
			if !strings.Contains(line, "syncer connect estateguru -name acme") || !strings.Contains(line, "since=") {
				t.Fatalf("the WARN should say since when and the fix:\n%s", line)
			}
		}
	}
	if warns < 2 {
		t.Fatalf("WARN lines naming acme = %d, want one per run (at least 2)\n%s", warns, d.stderr)
	}
	// The run is partial, counts the skipped connection, and the history
	// shows the gap.
	if got, want := w.queryInt("SELECT connections_skipped FROM sync_runs WHERE status = 'partial' ORDER BY id DESC LIMIT 1"), int64(1); got != want {
		t.Fatalf("connections_skipped = %d, want %d", got, want)
	}
	if got := w.queryInt("SELECT count(*) FROM sync_runs WHERE trigger = 'schedule' AND status = 'ok'"); got != 0 {
		t.Fatalf("%d scheduled runs say ok while acme needs re-login", got)
	}
	skipped := w.queryString(`SELECT error FROM sync_results WHERE connection = 'acme' AND status = 'skipped' ORDER BY run_id DESC LIMIT 1`)
	if !strings.Contains(skipped, "not attempted") || !strings.Contains(skipped, "syncer connect estateguru -name acme") {
		t.Fatalf("the skipped result should say why and the fix: %q", skipped)
	}
	// systemd STATUS=.
	if !regexp.MustCompile(`STATUS=last run \d\d:\d\dZ: 2 ok, 1 needs re-login: acme`).MatchString(notes.all()) {
		t.Fatalf("STATUS= should name acme: %q", notes.all())
	}
	// The metrics file.
	fams := readMetricsFile(t, metricsFile)
	acme := map[string]string{"connection": "acme", "provider": "estateguru"}
	good := map[string]string{"connection": "good", "provider": "estateguru"}
	er := map[string]string{"connection": "er", "provider": "everreal"}
	wantMetric(t, fams, "syncer_connection_needs_reauth", acme, 1)
	wantMetric(t, fams, "syncer_connection_up", acme, 0)
	wantMetric(t, fams, "syncer_connection_needs_reauth", good, 0)
	wantMetric(t, fams, "syncer_connection_up", good, 1)
	wantMetric(t, fams, "syncer_connection_up", er, 1)
	wantMetric(t, fams, "syncer_last_run_success", nil, 0)
	if v, ok := metricValue(fams, "syncer_connection_refresh_token_expiry_timestamp_seconds", er); !ok || v < float64(time.Now().Unix()) {
		t.Fatalf("er's refresh token expiry = %v (present %v), want a time in the future", v, ok)
	}
	if _, ok := metricValue(fams, "syncer_connection_refresh_token_expiry_timestamp_seconds", good); ok {
		t.Fatal("good's refresh token expiry is unknown: the series must be absent")
	}
	if v, ok := metricValue(fams, "syncer_connection_last_success_timestamp_seconds", good); !ok || v <= 0 {
		t.Fatalf("good's last success = %v (present %v)", v, ok)
	}
	if v, ok := metricValue(fams, "syncer_last_run_timestamp_seconds", nil); !ok || v <= 0 {
		t.Fatalf("last run timestamp = %v (present %v)", v, ok)
	}
	if v, _ := metricValue(fams, "syncer_syncs_total", map[string]string{"provider": "estateguru", "result": "skipped"}); v < 1 {
		b, _ := os.ReadFile(metricsFile)
		t.Fatalf("skipped estateguru syncs = %v, want at least 1\n%s\n%s", v, b, d.stderr)
	}
	if v, _ := metricValue(fams, "syncer_provider_requests_total", map[string]string{"provider": "estateguru", "code": "200"}); v < 1 {
		t.Fatalf("estateguru 200 answers = %v, want at least 1", v)
	}
	if v, _ := metricValue(fams, "syncer_snapshot_rows_written_total", map[string]string{"provider": "estateguru"}); v < 3 {
		t.Fatalf("estateguru rows written = %v, want at least 3 (a snapshot and 2 investments)", v)
	}
	// The endpoint, on loopback.
	m := addrLine.FindStringSubmatch(d.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.stderr)
	}
	if host, _, _ := net.SplitHostPort(m[1]); host != "127.0.0.1" {
		t.Fatalf("metrics listen on %s, want loopback", m[1])
	}
	code, body := httpGet(t, "http://"+m[1]+"/metrics")
	if code != 200 || !strings.Contains(body, `syncer_connection_needs_reauth{connection="acme",provider="estateguru"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	parseMetrics(t, body)
	if code, body := httpGet(t, "http://"+m[1]+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s, want 200", code, body)
	}
	// Pings: /start, then /fail with the names.
	if rcv.countPings("/start") < 2 || rcv.countPings("/fail") < 2 || rcv.countPings("") != 0 {
		pings, _ := rcv.snapshot()
		t.Fatalf("pings: %q; want /start and /fail for every run, no success", pings)
	}
	pings, _ := rcv.snapshot()
	for _, p := range pings {
		if strings.HasPrefix(p, "/fail ") && !strings.Contains(p, "acme") {
			t.Fatalf("the /fail ping should name acme: %q", p)
		}
	}
	// One notification for the transition, on each channel.
	if got := rcv.hooksAbout("acme"); got != 1 {
		_, hooks := rcv.snapshot()
		t.Fatalf("webhook messages about acme = %d, want 1: %q", got, hooks)
	}
	evs := readEvents(t, eventsFile)
	if got := countEvents(evs, monitor.EventReauthRequired, "acme"); got != 1 || len(evs) != 1 {
		t.Fatalf("command events = %+v, want one reauth_required for acme", evs)
	}
	ev := evs[0]
	if ev.Provider != "estateguru" || ev.State != "reauth_required" || !strings.Contains(ev.Fix, "syncer connect estateguru -name acme") ||
		!strings.Contains(ev.LastError, "invalid_grant") || ev.Time == "" || ev.Host == "" || ev.Message == "" {
		t.Fatalf("the event lacks a field: %+v", ev)
	}

	// A restart does not announce it again.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := d.waitExit(t, 20*time.Second); got != 0 {
		t.Fatalf("exit after SIGTERM = %d\n%s", got, d.stderr)
	}
	before := runsOf("partial")
	d2 := start()
	waitUntil(t, d2, "two more partial runs after the restart", func() bool { return runsOf("partial") >= before+2 })
	if got := rcv.hooksAbout("acme"); got != 1 {
		t.Fatalf("webhook messages about acme after a restart = %d, want still 1", got)
	}
	if got := len(readEvents(t, eventsFile)); got != 1 {
		t.Fatalf("command events after a restart = %d, want still 1", got)
	}

	// Re-connected, it recovers: a success ping, one "recovered" message,
	// the metrics follow.
	w.importEstateGuru("acme", "acme")
	waitUntil(t, d2, "an ok run", func() bool { return runsOf("ok") >= 1 })
	waitUntil(t, d2, "the recovered notification", func() bool {
		return countEvents(readEvents(t, eventsFile), monitor.EventRecovered, "acme") == 1
	})
	waitUntil(t, d2, "a success ping", func() bool { return rcv.countPings("") >= 1 })
	notes.wait(t, d2, ": 3 ok")
	waitUntil(t, d2, "the metrics file to show acme up", func() bool {
		v, _ := metricValue(readMetricsFile(t, metricsFile), "syncer_connection_up", acme)
		return v == 1
	})
	fams = readMetricsFile(t, metricsFile)
	wantMetric(t, fams, "syncer_connection_needs_reauth", acme, 0)
	if got := rcv.hooksAbout("acme"); got != 2 {
		t.Fatalf("webhook messages about acme = %d, want 2 (refused, recovered)", got)
	}
	if err := d2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d2.waitExit(t, 20*time.Second)

	// No secret anywhere: log, metrics, pings, messages, events.
	_, hooks := rcv.snapshot()
	pings, _ = rcv.snapshot()
	b, _ := os.ReadFile(metricsFile)
	e, _ := os.ReadFile(eventsFile)
	all := d.stderr.String() + d2.stderr.String() + string(b) + string(e) + strings.Join(hooks, "\n") + strings.Join(pings, "\n") + notes.all()
	w.noSecrets(all, canaryPingID, canaryHookToken)
}

// TestOnceDeliveryFailuresNeverFailTheRun: an unreachable ping, a webhook
// that answers 500 and a notify command that fails are logged with their
// kind; the run's outcome is what it would be without them; the missed
// notification is delivered by the next run.
func TestOnceDeliveryFailuresNeverFailTheRun(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "good")
	addSampleInvestor(w.sb, "acme")
	w.importEstateGuru("good", "good")
	w.importEstateGuru("acme", "acme")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	rcv := newReceiver(t)
	rcv.fail = true
	dir := t.TempDir()
	eventsFile := filepath.Join(dir, "events.jsonl")
	w.env = []string{
		"SYNCER_PING_URL=http://" + deadAddr + "/ping/" + canaryPingID,
		"SYNCER_NOTIFY_URLS=" + rcv.notifyURL(),
		"SYNCER_NOTIFY_COMMAND=cat > /dev/null; echo no luck >&2; exit 3",
	}
	res := w.mustRun(1, "", "-once")
	for _, want := range []string{"ping failed", "kind=", "notification not delivered", "notify command failed"} {
		if !strings.Contains(res.stderr, want) {
			t.Fatalf("the log lacks %q:\n%s", want, res.stderr)
		}
	}
	w.noSecrets(res.stderr, canaryPingID, canaryHookToken)
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "partial"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM latest_estateguru_portfolios WHERE connection = 'good'"), int64(1); got != want {
		t.Fatalf("good's snapshots = %d, want %d", got, want)
	}

	// Delivery works again: the next run delivers what was missed, once.
	rcv.mu.Lock()
	rcv.fail = false
	rcv.mu.Unlock()
	w.env = []string{
		"SYNCER_NOTIFY_URLS=" + rcv.notifyURL(),
		"SYNCER_NOTIFY_COMMAND=cat >> " + eventsFile,
	}
	w.mustRun(1, "", "-once")
	w.mustRun(1, "", "-once")
	if got := countEvents(readEvents(t, eventsFile), monitor.EventReauthRequired, "acme"); got != 1 {
		t.Fatalf("reauth_required events for acme = %d, want 1", got)
	}
	// The failed attempt reached the webhook too (answered 500), then one
	// delivered message.
	if got := rcv.hooksAbout("acme"); got != 2 {
		t.Fatalf("webhook requests about acme = %d, want 2 (one refused, one delivered)", got)
	}
}

// TestNotifyAfterFailuresInARow: a connection failing (not refused) is
// announced after SYNCER_NOTIFY_AFTER runs in a row, once.
func TestNotifyAfterFailuresInARow(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "flaky")
	w.importEstateGuru("flaky", "flaky")
	eventsFile := filepath.Join(t.TempDir(), "events.jsonl")
	w.env = []string{"SYNCER_NOTIFY_COMMAND=cat >> " + eventsFile, "SYNCER_NOTIFY_AFTER=2", "SYNCER_RETRIES=0"}
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Status: 503, Body: "down", Times: 3})
	w.mustRun(1, "", "-once")
	if got := len(readEvents(t, eventsFile)); got != 0 {
		t.Fatalf("events after one failure = %d, want 0", got)
	}
	w.mustRun(1, "", "-once")
	w.mustRun(1, "", "-once")
	evs := readEvents(t, eventsFile)
	if got := countEvents(evs, monitor.EventFailing, "flaky"); got != 1 || len(evs) != 1 {
		t.Fatalf("events = %+v, want one failing event", evs)
	}
	if evs[0].Failures != 2 {
		t.Fatalf("failures = %d, want 2", evs[0].Failures)
	}
	w.mustRun(0, "", "-once")
	if got := countEvents(readEvents(t, eventsFile), monitor.EventRecovered, "flaky"); got != 1 {
		t.Fatalf("recovered events = %d, want 1", got)
	}
}

// TestOnceWritesTheMetricsFileAndWarnsOfDyingRefreshTokens: -once writes
// the metrics file; a refresh token dying within SYNCER_REFRESH_WARN is a
// WARN, a partial run, exit 1 and one notification.
func TestOnceWritesTheMetricsFileAndWarnsOfDyingRefreshTokens(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleUser(w.sb, "jo@example.com")
	w.importEverReal("er", "jo@example.com")
	dir := t.TempDir()
	metricsFile := filepath.Join(dir, "syncer.prom")
	eventsFile := filepath.Join(dir, "events.jsonl")
	w.env = []string{"SYNCER_METRICS_FILE=" + metricsFile, "SYNCER_NOTIFY_COMMAND=cat >> " + eventsFile}
	w.mustRun(0, "", "-once")
	fams := readMetricsFile(t, metricsFile)
	wantMetric(t, fams, "syncer_connection_up", map[string]string{"connection": "er", "provider": "everreal"}, 1)
	wantMetric(t, fams, "syncer_last_run_success", nil, 1)
	if got := len(readEvents(t, eventsFile)); got != 0 {
		t.Fatalf("events = %d, want 0 while all is well", got)
	}

	// The sandbox's refresh tokens live 30 days: with a 60-day window, it
	// dies "soon".
	w.env = append(w.env, "SYNCER_REFRESH_WARN=1440h")
	for range 2 {
		res := w.mustRun(1, "", "-once")
		if !strings.Contains(res.stderr, "refresh token dies soon") || !strings.Contains(res.stderr, "connection=er") {
			t.Fatalf("the log should warn of er's refresh token:\n%s", res.stderr)
		}
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "partial"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
	if got, want := w.queryInt("SELECT connections_warned FROM sync_runs ORDER BY id DESC LIMIT 1"), int64(1); got != want {
		t.Fatalf("connections_warned = %d, want %d", got, want)
	}
	evs := readEvents(t, eventsFile)
	if got := countEvents(evs, monitor.EventRefreshExpiring, "er"); got != 1 || len(evs) != 1 {
		t.Fatalf("events = %+v, want one refresh_expiring", evs)
	}
	if evs[0].RefreshExpiresAt == "" || !strings.Contains(evs[0].Fix, "syncer connect everreal -name er") {
		t.Fatalf("the event should say when and how: %+v", evs[0])
	}
}

// TestStatusNeedsOnlyReadAccessToSnapshots runs `status` as a user who can
// only read snapshots.db (a reporting group member): it works, writes
// nothing, and never opens tokens.db.
func TestStatusNeedsOnlyReadAccessToSnapshots(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "good")
	addSampleInvestor(w.sb, "acme")
	w.importEstateGuru("good", "good")
	w.importEstateGuru("acme", "acme")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")
	w.mustRun(1, "", "-once")

	before := dirState(t, w.dataDir)
	var res result
	if os.Geteuid() == 0 {
		res = runAsReportingUser(t, w, "status", "-json")
	} else {
		// Not root: take the write bits away instead.
		for _, p := range []string{w.dataDir, filepath.Join(w.dataDir, "snapshots.db")} {
			if err := os.Chmod(p, 0o550); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { os.Chmod(w.dataDir, 0o750) })
		res = runBinary(w.environ(), "", "status", "-json")
	}
	if res.code != 1 {
		t.Fatalf("status as a reader: want exit 1 (acme needs re-login), got:\n%s", res)
	}
	var out []connectionStatus
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("status -json: %v\n%s", err, res)
	}
	acme := findStatus(t, out, "acme")
	if acme.State != "reauth_required" || !acme.NeedsAttention || acme.StateSince == nil ||
		!strings.Contains(acme.Fix, "syncer connect estateguru -name acme") {
		t.Fatalf("acme's status: %+v", acme)
	}
	if good := findStatus(t, out, "good"); good.NeedsAttention || good.LastSuccessAt == nil {
		t.Fatalf("good's status: %+v", good)
	}
	if after := dirState(t, w.dataDir); after != before {
		t.Fatalf("status changed the data directory:\nbefore %s\nafter  %s", before, after)
	}

	// The read-only commands never create a data directory or database.
	missing := filepath.Join(t.TempDir(), "nothing-here")
	env := append(w.environ(), "SYNCER_DATA_DIR="+missing)
	for _, args := range [][]string{{"status"}, {"query", "SELECT 1"}, {"backup", filepath.Join(t.TempDir(), "b.db")}} {
		res := runBinary(env, "", args...)
		if res.code == 0 {
			t.Fatalf("%v without a database: want an error, got:\n%s", args, res)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("%v created the data directory", args)
		}
	}
}

// dirState is the names, sizes and modification times of a directory's
// files.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%d:%d ", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String()
}

// runAsReportingUser runs the binary as nobody (uid and gid 65534), with
// snapshots.db and its WAL files in group nobody, mode 0640, and the data
// directory 0750: read access to snapshots.db alone; tokens.db stays 0600
// root's.
func runAsReportingUser(t *testing.T, w *world, args ...string) result {
	t.Helper()
	const nobody = 65534
	if err := os.Chown(w.dataDir, 0, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"snapshots.db", "snapshots.db-wal", "snapshots.db-shm"} {
		p := filepath.Join(w.dataDir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := os.Chown(p, 0, nobody); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// The way down to the data directory and to a copy of the binary must
	// be open to nobody.
	for p := filepath.Dir(w.dataDir); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binDir := t.TempDir()
	os.Chmod(binDir, 0o755)
	os.Chmod(filepath.Dir(binDir), 0o755)
	bin := filepath.Join(binDir, "syncer")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := execAs(bin, nobody, args...)
	cmd.Env = w.environ()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running as nobody: %v", err)
	}
	return res
}

// TestStartupChecksRefuseBadMonitoringSettings: each bad setting is exit 2
// naming the variable, before anything is done, and never prints a URL's
// secret parts.
func TestStartupChecksRefuseBadMonitoringSettings(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleUser(w.sb, "jo@example.com")
	w.importEverReal("er", "jo@example.com")
	notDir := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const secret = "CANARY-url-secret-6b0d"
	for _, tc := range []struct {
		env  []string
		args []string
		want []string
	}{
		{[]string{"SYNCER_PING_URL=ftp://user:" + secret + "@example.com/" + secret}, nil, []string{"SYNCER_PING_URL", "scheme"}},
		{[]string{"SYNCER_PING_URL=::not a url " + secret}, []string{"-once"}, []string{"SYNCER_PING_URL"}},
		{[]string{"SYNCER_NOTIFY_URLS=nosuchservice://" + secret + "@host/" + secret}, nil, []string{"SYNCER_NOTIFY_URLS", "entry 1 (nosuchservice://...)"}},
		{[]string{"SYNCER_NOTIFY_URLS=ntfy://ntfy.sh/ok-topic telegram://" + secret + "@telegram"}, []string{"-once"}, []string{"SYNCER_NOTIFY_URLS", "entry 2"}},
		{[]string{"SYNCER_NOTIFY_AFTER=0"}, nil, []string{"SYNCER_NOTIFY_AFTER"}},
		{[]string{"SYNCER_METRICS_FILE=" + filepath.Join(notDir, "syncer.prom")}, nil, []string{"SYNCER_METRICS_FILE"}},
		{[]string{"SYNCER_METRICS_FILE=" + filepath.Join(notDir, "syncer.prom")}, []string{"-once"}, []string{"SYNCER_METRICS_FILE"}},
		{[]string{"SYNCER_METRICS_ADDR=" + busy.Addr().String()}, nil, []string{"SYNCER_METRICS_ADDR", busy.Addr().String()}},
		{[]string{"SYNCER_METRICS_ADDR=nonsense"}, nil, []string{"SYNCER_METRICS_ADDR"}},
		{[]string{"SYNCER_EVERREAL_CLIENT_ID=", "SYNCER_EVERREAL_CLIENT_SECRET="}, nil, []string{"SYNCER_EVERREAL_CLIENT_ID", `"er"`}},
	} {
		runs := w.queryInt("SELECT count(*) FROM sync_runs")
		res := runBinary(append(w.environ(), tc.env...), "", tc.args...)
		if res.code != 2 {
			t.Fatalf("%v %v: want exit 2, got:\n%s", tc.env, tc.args, res)
		}
		for _, want := range tc.want {
			if !strings.Contains(res.stderr, want) {
				t.Fatalf("%v: the message should contain %q:\n%s", tc.env, want, res)
			}
		}
		w.noSecrets(res.stdout+res.stderr, secret)
		if got := w.queryInt("SELECT count(*) FROM sync_runs"); got != runs {
			t.Fatalf("%v: a run was recorded", tc.env)
		}
	}
}

// TestNotifyCommandForOnFailure: `syncer notify UNIT` (what
// syncer-notify@.service runs) sends one unit_failed event naming the
// connections needing attention; with nothing configured it is exit 2.
func TestNotifyCommandForOnFailure(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "acme")
	w.importEstateGuru("acme", "acme")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")
	w.mustRun(1, "", "-once")

	res := w.mustRun(2, "", "notify", "syncer-once.service")
	if !strings.Contains(res.stderr, "SYNCER_NOTIFY_URLS") {
		t.Fatalf("notify without a destination should say what to set:\n%s", res)
	}
	rcv := newReceiver(t)
	eventsFile := filepath.Join(t.TempDir(), "events.jsonl")
	w.env = []string{"SYNCER_NOTIFY_COMMAND=cat >> " + eventsFile, "SYNCER_NOTIFY_URLS=" + rcv.notifyURL()}
	w.mustRun(0, "", "notify", "syncer-once.service")
	evs := readEvents(t, eventsFile)
	if len(evs) != 1 || evs[0].Event != monitor.EventUnitFailed || evs[0].Unit != "syncer-once.service" ||
		!strings.Contains(evs[0].Message, "acme") {
		t.Fatalf("events = %+v, want one unit_failed naming acme", evs)
	}
	if got := rcv.hooksAbout("syncer-once.service"); got != 1 {
		t.Fatalf("webhook messages = %d, want 1", got)
	}
}

// execAs makes a command that runs as uid and gid id.
func execAs(bin string, id uint32, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id}}
	return cmd
}

// TestHangingDeliveriesAreCutOff: a webhook that never answers and a notify
// command that never ends are cut off at SYNCER_NOTIFY_TIMEOUT, logged, and
// the run ends as it would without them.
func TestHangingDeliveriesAreCutOff(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "acme")
	w.importEstateGuru("acme", "acme")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	w.env = []string{
		"SYNCER_NOTIFY_URLS=generic://" + strings.TrimPrefix(hang.URL, "http://") + "/hook/" + canaryHookToken + "?disabletls=yes",
		"SYNCER_NOTIFY_COMMAND=sleep 600",
		"SYNCER_NOTIFY_TIMEOUT=1s",
	}
	res := w.mustRun(1, "", "-once")
	for _, want := range []string{"notification not delivered", "notify command failed", "killed after 1s"} {
		if !strings.Contains(res.stderr, want) {
			t.Fatalf("the log lacks %q:\n%s", want, res.stderr)
		}
	}
	w.noSecrets(res.stderr, canaryHookToken)
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'acme'"), "reauth_required"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
}

// The notify command learns what happened from its stdin, never syncer's
// secrets from its environment: whatever it prints on failure reaches the
// log, so neither the client secrets nor the database password may be there.
func TestNotifyCommandGetsNoSecrets(t *testing.T) {
	const pgCanary = "CANARY-pg-password-5d21"
	w := newWorld(t, sandbox.Options{})
	envFile := filepath.Join(t.TempDir(), "env")
	w.env = []string{
		"SYNCER_NOTIFY_COMMAND=env > " + envFile + "; env >&2; exit 3",
		"SYNCER_DATABASE_URL=postgres://syncer:" + pgCanary + "@127.0.0.1:1/syncer",
		"PGPASSWORD=" + pgCanary,
	}
	res := w.run("", "notify", "syncer-once.service")
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("the notify command did not run: %v\n%s", err, res)
	}
	env := string(b)
	if !strings.Contains(env, "SYNCER_EVENT=unit_failed") {
		t.Fatalf("the command's environment lacks SYNCER_EVENT:\n%s", env)
	}
	for _, secret := range append(w.secrets(), pgCanary) {
		if strings.Contains(env, secret) {
			t.Errorf("the notify command's environment holds a secret (%s...)", secret[:12])
		}
		if strings.Contains(res.stdout+res.stderr, secret) {
			t.Errorf("syncer's output holds a secret (%s...):\n%s", secret[:12], res)
		}
	}
	if strings.Contains(env, "SYNCER_DATABASE_URL") || strings.Contains(env, "CLIENT_SECRET") {
		t.Errorf("the notify command's environment names syncer's secret variables:\n%s", env)
	}
}
