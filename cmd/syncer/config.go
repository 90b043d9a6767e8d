package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// Config is every setting syncer takes, all from the environment
// (prefix SYNCER_). `syncer -help` prints this list with defaults.
type Config struct {
	DataDir        string        `envconfig:"DATA_DIR" default:"./syncer-data" desc:"directory holding snapshots.db and tokens.db (created 0750)"`
	Schedule       string        `envconfig:"SCHEDULE" default:"@every 1h" desc:"when the daemon syncs: five-field cron (\"0 * * * *\"), a descriptor (\"@hourly\", \"@every 30m\"), optionally prefixed \"CRON_TZ=Europe/Berlin \"; UTC otherwise"`
	SyncOnStart    bool          `envconfig:"SYNC_ON_START" default:"true" desc:"the daemon syncs once at start, before the first scheduled run"`
	SnapshotPeriod time.Duration `envconfig:"SNAPSHOT_PERIOD" default:"24h" desc:"one snapshot per connection per period (UTC); a later run in the same period replaces it"`
	Concurrency    int           `envconfig:"CONCURRENCY" default:"8" desc:"connections talking to their providers at once (two more may wait to write); also the cap on connections to one provider host"`
	HTTPTimeout    time.Duration `envconfig:"HTTP_TIMEOUT" default:"30s" desc:"deadline for one HTTP call to a provider, body included"`
	Retries        int           `envconfig:"RETRIES" default:"3" desc:"extra attempts for a provider call that failed transiently (network, 5xx, 429)"`
	RetryBackoff   time.Duration `envconfig:"RETRY_BACKOFF" default:"500ms" desc:"first wait before retrying a failed provider call; each next wait doubles, with jitter, up to 30s (a provider's Retry-After is obeyed up to 2m)"`
	RateLimit      float64       `envconfig:"RATE_LIMIT" default:"4" desc:"requests per second to one provider host (EverReal allows 300 a minute); 0 means no limit"`
	Retention      time.Duration `envconfig:"RETENTION" default:"0" desc:"drop snapshots older than this after a successful run (e.g. 8760h); 0 keeps everything"`
	RefreshWarn    time.Duration `envconfig:"REFRESH_WARN" default:"336h" desc:"status warns when a refresh token dies within this (re-connect needed then)"`
	LockTimeout    time.Duration `envconfig:"LOCK_TIMEOUT" default:"2m" desc:"how long a sync waits for another syncer process working on the same connection"`
	LogLevel       string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat      string        `envconfig:"LOG_FORMAT" default:"auto" desc:"auto (colour on a terminal, plain under journald), text or json"`

	EverRealClientID       string          `envconfig:"EVERREAL_CLIENT_ID" desc:"client id EverReal issued to you"`
	EverRealClientSecret   provider.Secret `envconfig:"EVERREAL_CLIENT_SECRET" desc:"client secret EverReal issued to you (or the systemd credential everreal-client-secret)"`
	EstateGuruClientID     string          `envconfig:"ESTATEGURU_CLIENT_ID" desc:"client id EstateGuru issued to you"`
	EstateGuruClientSecret provider.Secret `envconfig:"ESTATEGURU_CLIENT_SECRET" desc:"client secret EstateGuru issued to you (or the systemd credential estateguru-client-secret)"`
	EstateGuruURL          string          `envconfig:"ESTATEGURU_URL" default:"https://estateguru.co" desc:"EstateGuru base URL for new connections"`
	TokenKeyFile           string          `envconfig:"TOKEN_KEY_FILE" desc:"file with a 32-byte key (64 hex digits or raw) to encrypt tokens in tokens.db with AES-GCM (or the systemd credential token-key)"`

	// PostgreSQL (issue 16; docs/postgres.md).
	DatabaseURL             string        `envconfig:"DATABASE_URL" desc:"postgres://USER@HOST:PORT/DB?sslmode=verify-full: keep everything in PostgreSQL instead of SQLite files in SYNCER_DATA_DIR (password in ~/.pgpass or PGPASSWORD); several syncer instances may share it; needs SYNCER_TOKEN_KEY_FILE"`
	DatabasePlaintextTokens bool          `envconfig:"DATABASE_PLAINTEXT_TOKENS" default:"false" desc:"with SYNCER_DATABASE_URL: store tokens unsealed, without SYNCER_TOKEN_KEY_FILE (not recommended: backups, replicas and superusers of the server would see them)"`
	DatabaseLease           time.Duration `envconfig:"DATABASE_LEASE" default:"1m" desc:"with SYNCER_DATABASE_URL: how long an instance's turn on a connection lasts unless renewed; an instance that dies mid-turn delays that connection by at most this"`

	// TokenKey is read from TokenKeyFile or the token-key credential.
	TokenKey []byte `ignored:"true"`
}

const envPrefix = "SYNCER"

// loadConfig reads and checks the environment. Every error names the
// variable and a good value; nothing is touched on disk before it passes.
func loadConfig() (*Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return nil, configError(err)
	}
	if err := c.loadCredentials(); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func configError(err error) error {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	name := pe.KeyName // already prefixed: SYNCER_...
	switch pe.TypeName {
	case "Duration", "time.Duration":
		return fmt.Errorf("%s: %q is not a duration (try \"30s\", \"24h\" or \"1h30m\")", name, pe.Value)
	case "int":
		return fmt.Errorf("%s: %q is not a whole number (try \"8\")", name, pe.Value)
	case "float64":
		return fmt.Errorf("%s: %q is not a number (try \"4\" or \"0.5\")", name, pe.Value)
	case "bool":
		return fmt.Errorf("%s: %q is not true or false", name, pe.Value)
	}
	return fmt.Errorf("%s: %q is not valid", name, pe.Value)
}

// loadCredentials fills empty secrets from systemd credentials
// ($CREDENTIALS_DIRECTORY/<name>), and reads the token key.
func (c *Config) loadCredentials() error {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	read := func(name string) (string, bool, error) {
		if dir == "" {
			return "", false, nil
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("systemd credential %s: %w", name, err)
		}
		return strings.TrimSpace(string(b)), true, nil
	}
	for _, cred := range []struct {
		name string
		dst  *provider.Secret
	}{
		{"everreal-client-secret", &c.EverRealClientSecret},
		{"estateguru-client-secret", &c.EstateGuruClientSecret},
	} {
		if !cred.dst.IsZero() {
			continue
		}
		v, ok, err := read(cred.name)
		if err != nil {
			return err
		}
		if ok {
			*cred.dst = provider.Secret(v)
		}
	}
	var raw []byte
	var source string
	switch {
	case c.TokenKeyFile != "":
		b, err := os.ReadFile(c.TokenKeyFile)
		if err != nil {
			return fmt.Errorf("SYNCER_TOKEN_KEY_FILE: %w", err)
		}
		raw, source = b, "SYNCER_TOKEN_KEY_FILE"
	default:
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, "token-key"))
			if err == nil {
				raw, source = b, "systemd credential token-key"
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("systemd credential token-key: %w", err)
			}
		}
	}
	if raw != nil {
		key, err := parseKey(raw)
		if err != nil {
			return fmt.Errorf("%s: %w (make one with: head -c 32 /dev/urandom | xxd -p -c 64 > token.key)", source, err)
		}
		c.TokenKey = key
	}
	return nil
}

// parseKey accepts 64 hex digits (with surrounding space) or 32 raw bytes.
func parseKey(b []byte) ([]byte, error) {
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	if len(b) == 32 {
		return b, nil
	}
	return nil, fmt.Errorf("a token key is 64 hex digits or 32 raw bytes, this is %d bytes", len(b))
}

func (c *Config) validate() error {
	var errs []error
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("SYNCER_DATA_DIR: empty (try \"/var/lib/syncer\")"))
	}
	if _, err := sync.ParseSchedule(c.Schedule); err != nil {
		errs = append(errs, fmt.Errorf("SYNCER_SCHEDULE: %q is not a cron spec: %v (try \"@every 1h\" or \"0 * * * *\")", c.Schedule, err))
	}
	if c.SnapshotPeriod < time.Minute {
		errs = append(errs, fmt.Errorf("SYNCER_SNAPSHOT_PERIOD: %s is too short (at least 1m; try \"24h\")", c.SnapshotPeriod))
	}
	if c.Concurrency < 1 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("SYNCER_CONCURRENCY: %d is out of range (1 to 1024; try \"8\")", c.Concurrency))
	}
	if c.HTTPTimeout < time.Second {
		errs = append(errs, fmt.Errorf("SYNCER_HTTP_TIMEOUT: %s is too short (at least 1s; try \"30s\")", c.HTTPTimeout))
	}
	if c.Retries < 0 || c.Retries > 10 {
		errs = append(errs, fmt.Errorf("SYNCER_RETRIES: %d is out of range (0 to 10; try \"3\")", c.Retries))
	}
	if c.RetryBackoff < time.Millisecond || c.RetryBackoff > 30*time.Second {
		errs = append(errs, fmt.Errorf("SYNCER_RETRY_BACKOFF: %s is out of range (1ms to 30s; try \"500ms\")", c.RetryBackoff))
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("SYNCER_RATE_LIMIT: %v is negative (try \"4\", or 0 for no limit)", c.RateLimit))
	}
	if c.Retention < 0 || (c.Retention > 0 && c.Retention < c.SnapshotPeriod) {
		errs = append(errs, fmt.Errorf("SYNCER_RETENTION: %s must be 0 (keep everything) or at least SYNCER_SNAPSHOT_PERIOD (try \"8760h\")", c.Retention))
	}
	if c.RefreshWarn < 0 {
		errs = append(errs, fmt.Errorf("SYNCER_REFRESH_WARN: %s is negative (try \"336h\")", c.RefreshWarn))
	}
	if c.LockTimeout < 0 {
		errs = append(errs, fmt.Errorf("SYNCER_LOCK_TIMEOUT: %s is negative (try \"2m\")", c.LockTimeout))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		errs = append(errs, fmt.Errorf("SYNCER_LOG_LEVEL: %q is not a level (debug, info, warn or error)", c.LogLevel))
	}
	switch strings.ToLower(c.LogFormat) {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("SYNCER_LOG_FORMAT: %q is not a format (auto, text or json)", c.LogFormat))
	}
	if err := checkProviderURL(c.EstateGuruURL); err != nil {
		errs = append(errs, fmt.Errorf("SYNCER_ESTATEGURU_URL: %w", err))
	}
	if (c.EverRealClientID == "") != c.EverRealClientSecret.IsZero() {
		errs = append(errs, errors.New("SYNCER_EVERREAL_CLIENT_ID and SYNCER_EVERREAL_CLIENT_SECRET: set both or neither"))
	}
	if (c.EstateGuruClientID == "") != c.EstateGuruClientSecret.IsZero() {
		errs = append(errs, errors.New("SYNCER_ESTATEGURU_CLIENT_ID and SYNCER_ESTATEGURU_CLIENT_SECRET: set both or neither"))
	}
	if c.DatabaseURL != "" { // issue 16
		if err := checkDatabaseURL(c.DatabaseURL); err != nil {
			errs = append(errs, err)
		}
		if c.DatabaseLease < 5*time.Second {
			errs = append(errs, fmt.Errorf("SYNCER_DATABASE_LEASE: %s is too short (at least 5s; try \"1m\")", c.DatabaseLease))
		}
	}
	return errors.Join(errs...)
}

// checkProviderURL accepts https URLs, and http only to a loopback host (the
// sandbox): a token never crosses a network in the clear.
func checkProviderURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL (try %q)", raw, estateguru.DefaultBaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be a plain base URL, without credentials, query or fragment", redactURL(u))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q uses http: tokens would cross the network unencrypted; use https (http is allowed only for loopback, such as the sandbox)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", redactURL(u))
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// normalizeBaseURL checks a provider base URL and drops a trailing slash.
func normalizeBaseURL(raw string) (string, error) {
	if err := checkProviderURL(raw); err != nil {
		return "", err
	}
	return strings.TrimRight(raw, "/"), nil
}

// printEnvUsage lists every variable with its default and meaning.
func printEnvUsage(w io.Writer) {
	var c Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	_ = envconfig.Usagef(envPrefix, &c, tw, "{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}")
	tw.Flush()
}
