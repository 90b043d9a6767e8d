// Package monitor makes syncer's health visible where operators look:
// Prometheus metrics (a node_exporter textfile and an HTTP endpoint), pings
// in the healthchecks.io convention, and notifications on change.
//
// It knows nothing of syncs or SQLite: cmd/syncer hands it plain values.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Names of every metric syncer exports. monitoring/ may use only these (a
// test checks it).
var MetricNames = []string{
	"syncer_connection_up",
	"syncer_connection_needs_reauth",
	"syncer_connection_last_success_timestamp_seconds",
	"syncer_connection_refresh_token_expiry_timestamp_seconds",
	"syncer_connection_consecutive_failures",
	"syncer_last_run_timestamp_seconds",
	"syncer_last_run_success",
	"syncer_run_duration_seconds",
	"syncer_syncs_total",
	"syncer_provider_requests_total",
	"syncer_provider_retries_total",
	"syncer_snapshot_rows_written_total",
}

// Connection is one connection's state after a run.
type Connection struct {
	Name, Provider string
	// Up: its last attempt succeeded.
	Up          bool
	NeedsReauth bool
	LastSuccess time.Time // zero: never
	// RefreshExpiry is when its refresh token dies; zero: unknown.
	RefreshExpiry       time.Time
	ConsecutiveFailures int
}

// SyncResult is one connection's outcome in a run.
type SyncResult struct {
	Provider string
	// Result is ok, failed or skipped.
	Result string
}

// Run is what a finished run did.
type Run struct {
	Finished time.Time
	Duration time.Duration
	// OK: the run's status was ok (nothing needs attention).
	OK      bool
	Results []SyncResult
	// RowsWritten is the total of snapshot rows written so far, by
	// provider (a running total, not this run's share).
	RowsWritten map[string]int64
}

// Metrics holds syncer's metrics in a registry of its own (no Go runtime
// or process metrics: a textfile from a -once run would carry them stale).
type Metrics struct {
	reg *prometheus.Registry

	conns *connCollector

	lastRun, lastRunSuccess, runDuration prometheus.Gauge

	syncs, requests, retries, rows *prometheus.CounterVec
	rowsSeen                       map[string]int64
}

// NewMetrics registers every metric.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		conns: newConnCollector(),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_last_run_timestamp_seconds",
			Help: "Unix time the last sync run finished."}),
		lastRunSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_last_run_success",
			Help: "1 when the last sync run's status was ok, else 0."}),
		runDuration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_run_duration_seconds",
			Help: "How long the last sync run took."}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_syncs_total",
			Help: "Connection syncs by provider and result (ok, failed, skipped)."}, []string{"provider", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_provider_requests_total",
			Help: "HTTP requests to providers by provider, operation and status code (0: no answer)."}, []string{"provider", "op", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_provider_retries_total",
			Help: "Provider requests retried after a transient failure, by provider and operation."}, []string{"provider", "op"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_snapshot_rows_written_total",
			Help: "Snapshot rows written (a snapshot and its companies or investments), by provider."}, []string{"provider"}),
		rowsSeen: map[string]int64{},
	}
	m.reg.MustRegister(m.conns,
		m.lastRun, m.lastRunSuccess, m.runDuration, m.syncs, m.requests, m.retries, m.rows)
	return m
}

// Registry is the registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetConnections replaces the per-connection gauges with these
// connections' states: a connection gone or disconnected disappears.
func (m *Metrics) SetConnections(conns []Connection) { m.conns.set(conns) }

// connCollector exports the per-connection gauges from the connections'
// states as they were last set, computed at each collection. Held as
// GaugeVecs, five series per connection with their label pairs took about
// 8 MB of live heap with 10,000 connections; this holds one small value
// per connection.
type connCollector struct {
	up, needsReauth, lastSuccess, refreshExpiry, failures *prometheus.Desc

	mu    sync.Mutex
	conns []Connection
}

func newConnCollector() *connCollector {
	labels := []string{"connection", "provider"}
	return &connCollector{
		up: prometheus.NewDesc("syncer_connection_up",
			"1 when the connection's last sync attempt succeeded, else 0.", labels, nil),
		needsReauth: prometheus.NewDesc("syncer_connection_needs_reauth",
			"1 when the provider refused the stored login and a person must run syncer connect again.", labels, nil),
		lastSuccess: prometheus.NewDesc("syncer_connection_last_success_timestamp_seconds",
			"Unix time of the connection's last successful sync (absent if never).", labels, nil),
		refreshExpiry: prometheus.NewDesc("syncer_connection_refresh_token_expiry_timestamp_seconds",
			"Unix time the connection's refresh token dies (absent when unknown).", labels, nil),
		failures: prometheus.NewDesc("syncer_connection_consecutive_failures",
			"How many of the connection's latest sync attempts failed in a row.", labels, nil),
	}
}

func (c *connCollector) set(conns []Connection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns = slices.Clone(conns)
}

// Describe implements prometheus.Collector.
func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.needsReauth, c.lastSuccess, c.refreshExpiry, c.failures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	conns := c.conns
	c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, conn Connection) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, conn.Name, conn.Provider)
	}
	for _, conn := range conns {
		gauge(c.up, boolValue(conn.Up), conn)
		gauge(c.needsReauth, boolValue(conn.NeedsReauth), conn)
		gauge(c.failures, float64(conn.ConsecutiveFailures), conn)
		if !conn.LastSuccess.IsZero() {
			gauge(c.lastSuccess, unix(conn.LastSuccess), conn)
		}
		if !conn.RefreshExpiry.IsZero() {
			gauge(c.refreshExpiry, unix(conn.RefreshExpiry), conn)
		}
	}
}

// RunFinished records a run.
func (m *Metrics) RunFinished(r Run) {
	m.lastRun.Set(unix(r.Finished))
	m.lastRunSuccess.Set(boolValue(r.OK))
	m.runDuration.Set(r.Duration.Seconds())
	for _, res := range r.Results {
		m.syncs.WithLabelValues(res.Provider, res.Result).Inc()
	}
	for p, total := range r.RowsWritten {
		if d := total - m.rowsSeen[p]; d > 0 {
			m.rows.WithLabelValues(p).Add(float64(d))
		}
		m.rowsSeen[p] = total
	}
}

// Request counts one provider request's answer (status 0: none arrived).
func (m *Metrics) Request(provider, op string, status int) {
	m.requests.WithLabelValues(provider, op, strconv.Itoa(status)).Inc()
}

// Retry counts one retried provider request.
func (m *Metrics) Retry(provider, op string) {
	m.retries.WithLabelValues(provider, op).Inc()
}

// WriteFile writes the metrics in the text format to path atomically: a
// temporary file in the same directory, renamed over path, so node_exporter
// never reads half a file.
func (m *Metrics) WriteFile(path string) error {
	if err := prometheus.WriteToTextfile(path, m.reg); err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	return nil
}

// CheckFileDir checks that a metrics file can be written at path: its
// directory exists and takes a new file.
func CheckFileDir(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".syncer-check-*")
	if err != nil {
		return fmt.Errorf("cannot create a file in %s: %w", dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ListenAddr is addr with a loopback host when it names none (":9464"
// becomes "127.0.0.1:9464"): metrics leave the machine only when the
// operator names the host.
func ListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port == "" {
		return "", errors.New("no port")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("port %q is not a number", port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Server serves /metrics and /healthz.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (see ListenAddr) now, so a port in use is an error at
// start-up, and returns the server, not yet serving. healthy answers
// /healthz: 200 while it returns nil, 503 otherwise.
func (m *Metrics) Listen(addr string, healthy func(context.Context) error) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := healthy(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "unhealthy:", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
