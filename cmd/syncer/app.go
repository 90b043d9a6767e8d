package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// app is the wiring every command shares: configuration, logger, store and
// provider clients.
type app struct {
	args  []string // the command line, for hints
	cfg   *Config
	log   *slog.Logger
	store appStore // *store.Store, or *pgstore.Store with SYNCER_DATABASE_URL (postgres.go)

	// metrics are counted by every command (cheap); written or served
	// only by syncs that are configured to.
	metrics *monitor.Metrics

	client   *http.Client
	mu       stdsync.Mutex
	policies map[string]*provider.HTTP // per provider host: its own rate limit
}

// newApp loads the configuration (a bad one is errConfig: exit 2, nothing
// touched) and sets up logging. It does not open the store.
func newApp(e env) (*app, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	a := &app{args: e.args, cfg: cfg, policies: map[string]*provider.HTTP{}, metrics: monitor.NewMetrics()}
	a.log = newLogger(e.stderr, cfg.LogLevel, cfg.LogFormat, cfg.secrets())
	a.client = newHTTPClient(cfg)
	return a, nil
}

// secrets lists the configured secret values, for the log backstop.
func (c *Config) secrets() []string {
	var out []string
	for _, cred := range []struct {
		id     string
		secret provider.Secret
	}{{c.EverRealClientID, c.EverRealClientSecret}, {c.EstateGuruClientID, c.EstateGuruClientSecret}} {
		if !cred.secret.IsZero() {
			out = append(out, cred.secret.Reveal())
			out = append(out, provider.BasicForms(cred.id, cred.secret.Reveal())...)
		}
	}
	// PostgreSQL's password, in the URL or beside it.
	if u, err := url.Parse(c.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw)
		}
	}
	if pw := os.Getenv("PGPASSWORD"); pw != "" {
		out = append(out, pw)
	}
	// The ping and notification URLs carry their secrets in their paths,
	// user info and queries.
	if !c.PingURL.IsZero() {
		out = append(out, monitor.URLSecrets(c.PingURL.Reveal())...)
	}
	if !c.NotifyURLs.IsZero() {
		for _, u := range strings.Fields(strings.NewReplacer(",", " ", "\n", " ").Replace(c.NotifyURLs.Reveal())) {
			out = append(out, monitor.URLSecrets(u)...)
		}
	}
	return out
}

func (a *app) openStore(ctx context.Context) error {
	if a.cfg.usesPostgres() { // issue 16: PostgreSQL instead of SQLite
		st, err := a.openPostgres(ctx)
		if err != nil {
			return err
		}
		a.store = st
		return nil
	}
	st, err := store.Open(ctx, a.cfg.DataDir, store.Options{TokenKey: a.cfg.TokenKey, BusyTimeout: a.cfg.BusyTimeout, Log: a.log})
	if errors.Is(err, store.ErrTokenKey) || errors.Is(err, os.ErrPermission) {
		// exit 2, like any other configuration error: an unwritable data
		// directory is fixed in the set-up, not by running again.
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	var oe *store.OwnerError
	if errors.As(err, &oe) {
		return fmt.Errorf("%w: %w\n%s", errConfig, err, ownerHint(oe, a.cfg.DataDir, a.args))
	}
	if errors.Is(err, store.ErrUntrusted) {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	if err != nil {
		return err
	}
	a.store = st
	return nil
}

// ownerHint says how to run the same command as the data directory's owner.
func ownerHint(oe *store.OwnerError, dataDir string, args []string) string {
	name := strconv.Itoa(oe.Owner)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	cmd := "syncer"
	for _, a := range args {
		cmd += " " + shellQuote(a)
	}
	dir := shellQuote(dataDir)
	if abs, err := filepath.Abs(dataDir); err == nil {
		dir = shellQuote(abs)
	}
	return fmt.Sprintf("If %s is the service's user, run syncer as it, for example:\n"+
		"  sudo -u %s -E SYNCER_DATA_DIR=%s %s\n"+
		"  systemd-run --pipe --wait --quiet -p User=%s -p EnvironmentFile=-/etc/syncer/syncer.env -E SYNCER_DATA_DIR=%s %s\n"+
		"(with the service's credentials too: the README's syncer-admin; a sync: systemctl start syncer-once.service)\n"+
		"If it is not, do not use this directory: another user made it, and anything syncer wrote there would be theirs; set SYNCER_DATA_DIR to a directory of your own.",
		name, name, dir, cmd, name, dir, cmd)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) close() {
	if a.store != nil {
		a.store.Close()
	}
	a.client.CloseIdleConnections()
}

// newHTTPClient is the one keep-alive pool for every provider host, with
// per-host connection caps so SYNCER_CONCURRENCY never opens more than that
// many connections to one host.
func newHTTPClient(cfg *Config) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
		MaxIdleConns:          4 * cfg.Concurrency,
		MaxIdleConnsPerHost:   cfg.Concurrency,
		MaxConnsPerHost:       cfg.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		// An API answering with a redirect is answering something else (a
		// login page, a maintenance page); never follow it with a token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// policy returns the HTTP call policy for a provider base URL: shared pool,
// per-host pacing and rate ceiling.
func (a *app) policy(providerName, baseURL string) *provider.HTTP {
	host := baseURL
	if u, err := url.Parse(baseURL); err == nil {
		host = u.Host
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.policies[host]; ok {
		return p
	}
	p := &provider.HTTP{
		Client:        a.client,
		Timeout:       a.cfg.HTTPTimeout,
		Retries:       a.cfg.Retries,
		Backoff:       a.cfg.RetryBackoff,
		MaxBackoff:    30 * time.Second,
		MaxRetryAfter: 2 * time.Minute,
	}
	// The retry line names the connection and the cause: the OAuth error
	// code, or what failed on the way (never the provider's description,
	// which the client scrubs of the call's secrets only later).
	p.OnRetry = func(ctx context.Context, r provider.Request, attempt int, wait time.Duration, err *provider.Error) {
		attrs := []any{"provider", r.Provider, "op", r.Op, "host", host,
			"attempt", attempt, "wait", wait.Round(time.Millisecond), "kind", err.Kind.String(), "status", err.Status,
			"cause", retryCause(err)}
		if name := provider.ConnectionOf(ctx); name != "" {
			attrs = append([]any{"connection", name}, attrs...)
		}
		a.log.Warn("provider call failed; retrying", attrs...)
		a.metrics.Retry(r.Provider, r.Op)
	}
	p.OnAnswer = func(r provider.Request, status int) { a.metrics.Request(r.Provider, r.Op, status) }
	if a.cfg.RateLimit > 0 {
		burst := max(1, int(a.cfg.RateLimit))
		p.Limiter = rate.NewLimiter(rate.Limit(a.cfg.RateLimit), burst)
	}
	p.Pacer = a.pacer(providerName, host) // pacing: see pacer.go
	a.policies[host] = p
	return p
}

// retryCause says why a call failed in a few words without secrets: the
// OAuth error code, the network error without the URL, or the HTTP status.
func retryCause(err *provider.Error) string {
	switch {
	case err.Code != "":
		return err.Code
	case err.Err != nil:
		inner := err.Err
		var ue *url.Error
		if errors.As(inner, &ue) {
			inner = ue.Err // the URL may carry a token in its query
		}
		return provider.CleanText(inner.Error(), 200)
	case err.Status != 0:
		return fmt.Sprintf("HTTP %d %s", err.Status, http.StatusText(err.Status))
	}
	return err.Kind.String()
}

// needCredentials fails, as a configuration error, when the provider's
// client credentials are not set: nothing can be asked of it without them.
func (a *app) needCredentials(providerName string) error {
	switch {
	case providerName == everreal.Name && a.cfg.EverRealClientID == "":
		return fmt.Errorf("%w: SYNCER_EVERREAL_CLIENT_ID and SYNCER_EVERREAL_CLIENT_SECRET are not set (EverReal issues them to you)", errConfig)
	case providerName == estateguru.Name && a.cfg.EstateGuruClientID == "":
		return fmt.Errorf("%w: SYNCER_ESTATEGURU_CLIENT_ID and SYNCER_ESTATEGURU_CLIENT_SECRET are not set (EstateGuru issues them to you)", errConfig)
	}
	return nil
}

func (a *app) everReal(baseURL string) *everreal.Client {
	return &everreal.Client{
		BaseURL:      baseURL,
		ClientID:     a.cfg.EverRealClientID,
		ClientSecret: a.cfg.EverRealClientSecret,
		HTTP:         a.policy(everreal.Name, baseURL),
	}
}

func (a *app) estateGuru(baseURL string) *estateguru.Client {
	return &estateguru.Client{
		BaseURL:      baseURL,
		ClientID:     a.cfg.EstateGuruClientID,
		ClientSecret: a.cfg.EstateGuruClientSecret,
		HTTP:         a.policy(estateguru.Name, baseURL),
	}
}

func (a *app) syncer() *sync.Syncer {
	// The providers, registered by name; one without client credentials is
	// left out (its connections fail as not configured).
	providers := sync.Providers{}
	if a.cfg.EverRealClientID != "" {
		providers[everreal.Name] = func(u string) sync.Provider { return sync.EverReal{Client: a.everReal(u)} }
	}
	if a.cfg.EstateGuruClientID != "" {
		providers[estateguru.Name] = func(u string) sync.Provider { return sync.EstateGuru{Client: a.estateGuru(u)} }
	}
	return &sync.Syncer{
		Store:       a.store,
		Providers:   providers,
		Log:         a.log,
		Concurrency: a.cfg.Concurrency,
		Period:      a.cfg.SnapshotPeriod,
		LockWait:    a.cfg.LockTimeout,
		AfterRun:    a.afterRun,
		Explain:     withHint,
		Reconnect:   reconnectCommand,
		RefreshWarn: a.cfg.RefreshWarn,
	}
}

// afterRun is the housekeeping after a sync: retention (only after a run
// that stored something, so a broken provider never ages out the history it
// cannot replace) and WAL checkpoints. Its failures are logged; the run's
// outcome stands.
func (a *app) afterRun(ctx context.Context, sum sync.Summary) {
	if ctx.Err() != nil {
		return // shutting down: closing the store checkpoints anyway
	}
	log := a.log.With("run_id", sum.RunID)
	if a.cfg.Retention > 0 && (sum.Status == store.RunOK || sum.Status == store.RunPartial) {
		cutoff := time.Now().UTC().Add(-a.cfg.Retention)
		n, err := a.store.Retain(ctx, cutoff)
		if err != nil {
			log.Error("retention failed; it is tried again after the next run", "error", err, "deleted", n)
		} else if n > 0 {
			log.Info("retention dropped old snapshots", "deleted", n, "older_than", cutoff.Format(time.RFC3339))
		}
	}
	cps, err := a.store.Checkpoint(ctx)
	if err != nil {
		log.Warn("WAL checkpoint failed; SQLite's own checkpoints go on", "error", err)
	}
	for _, c := range cps {
		switch {
		case c.Busy && len(c.Readers) > 0:
			// A reader pinning the WAL makes it grow run after run: say who.
			log.Warn("WAL not truncated: another process holds a read transaction open",
				"file", c.File, "frames", c.Frames, "checkpointed", c.Checkpointed, "readers", strings.Join(c.Readers, "; "))
		case c.Busy:
			log.Debug("WAL not truncated: a reader holds an older snapshot, or another process is writing",
				"file", c.File, "frames", c.Frames, "checkpointed", c.Checkpointed)
		}
	}
}
