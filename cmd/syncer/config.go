package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
)

// Config is every setting syncer takes, all from the environment
// (prefix SYNCER_). `syncer -help` prints this list with defaults.
type Config struct {
	DataDir        string        `envconfig:"DATA_DIR" default:"./syncer-data" desc:"directory holding snapshots.db and tokens.db (created 0750, owned by the user syncer runs as); unset: $STATE_DIRECTORY under systemd, else ./syncer-data unless the current directory is writable by other users"`
	Schedule       string        `envconfig:"SCHEDULE" default:"@every 1h" desc:"when the daemon syncs: five-field cron (\"0 * * * *\"), a descriptor (\"@hourly\", \"@every 30m\"), optionally prefixed \"CRON_TZ=Europe/Berlin \"; UTC otherwise"`
	SyncOnStart    bool          `envconfig:"SYNC_ON_START" default:"true" desc:"the daemon syncs once at start, before the first scheduled run"`
	SnapshotPeriod time.Duration `envconfig:"SNAPSHOT_PERIOD" default:"24h" desc:"one snapshot per connection per period (UTC); a later run in the same period replaces it"`
	Concurrency    int           `envconfig:"CONCURRENCY" default:"8" desc:"connections talking to their providers at once (two more may wait to write); also the cap on connections to one provider host"`
	HTTPTimeout    time.Duration `envconfig:"HTTP_TIMEOUT" default:"30s" desc:"deadline for one HTTP call to a provider, body included"`
	Retries        int           `envconfig:"RETRIES" default:"3" desc:"extra attempts for a provider call that failed transiently (network, 5xx, 429)"`
	RetryBackoff   time.Duration `envconfig:"RETRY_BACKOFF" default:"500ms" desc:"first wait before retrying a failed provider call; each next wait doubles, with jitter, up to 30s (a provider's Retry-After is obeyed up to 2m)"`
	RateLimit      float64       `envconfig:"RATE_LIMIT" default:"0" desc:"hard ceiling on requests per second to one provider host, above the adaptive pacing (SYNCER_PACING); 0 means no ceiling"`
	Pacing         string        `envconfig:"PACING" default:"adaptive" desc:"adaptive: pace each EverReal host by its X-RateLimit-* headers and each EstateGuru host by its answers (start at 4/s, ramp while clean, halve on 403/429/5xx); off: no pacing (only SYNCER_RATE_LIMIT)"`
	Retention      time.Duration `envconfig:"RETENTION" default:"0" desc:"drop snapshots older than this after a successful run (e.g. 8760h); 0 keeps everything"`
	RefreshWarn    time.Duration `envconfig:"REFRESH_WARN" default:"336h" desc:"every run and status warn when a refresh token dies within this (re-connect needed then)"`
	LockTimeout    time.Duration `envconfig:"LOCK_TIMEOUT" default:"2m" desc:"how long a sync waits for another syncer process working on the same connection"`
	BusyTimeout    time.Duration `envconfig:"BUSY_TIMEOUT" default:"10s" desc:"how long a write waits for another process holding a database file's write lock before failing"`
	LogLevel       string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat      string        `envconfig:"LOG_FORMAT" default:"auto" desc:"auto (colour on a terminal, plain under journald), text or json"`

	EverRealClientID       string          `envconfig:"EVERREAL_CLIENT_ID" desc:"client id EverReal issued to you"`
	EverRealClientSecret   provider.Secret `envconfig:"EVERREAL_CLIENT_SECRET" desc:"client secret EverReal issued to you (or the systemd credential everreal-client-secret)"`
	EstateGuruClientID     string          `envconfig:"ESTATEGURU_CLIENT_ID" desc:"client id EstateGuru issued to you"`
	EstateGuruClientSecret provider.Secret `envconfig:"ESTATEGURU_CLIENT_SECRET" desc:"client secret EstateGuru issued to you (or the systemd credential estateguru-client-secret)"`
	EstateGuruURL          string          `envconfig:"ESTATEGURU_URL" default:"https://estateguru.co" desc:"EstateGuru base URL for new connections"`
	TokenKeyFile           string          `envconfig:"TOKEN_KEY_FILE" desc:"file with a 32-byte key (64 hex digits or raw) to encrypt tokens in tokens.db with AES-GCM (or the systemd credential token-key)"`

	MetricsFile   string          `envconfig:"METRICS_FILE" desc:"write Prometheus metrics to this file after every run, atomically (node_exporter textfile collector, e.g. /var/lib/prometheus/node-exporter/syncer.prom)"`
	MetricsAddr   string          `envconfig:"METRICS_ADDR" desc:"daemon only: serve /metrics and /healthz on this address (\":9464\" listens on 127.0.0.1; name a host such as \"0.0.0.0:9464\" to listen beyond it); off when empty"`
	PingURL       provider.Secret `envconfig:"PING_URL" desc:"healthchecks.io-style check URL: <url>/start when a run starts, <url> on success, <url>/fail otherwise"`
	NotifyURLs    provider.Secret `envconfig:"NOTIFY_URLS" desc:"shoutrrr service URLs (ntfy://, slack://, smtp://, telegram://, generic+https://...), separated by spaces: a message on every change of a connection's health"`
	NotifyCommand string          `envconfig:"NOTIFY_COMMAND" desc:"run with sh -c on every change of a connection's health, the event as JSON on stdin"`
	NotifyAfter   int             `envconfig:"NOTIFY_AFTER" default:"3" desc:"a connection counts as failing (and is announced) after this many failed runs in a row"`
	NotifyTimeout time.Duration   `envconfig:"NOTIFY_TIMEOUT" default:"30s" desc:"time limit for one notification delivery, and for SYNCER_NOTIFY_COMMAND"`

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
	if _, set := os.LookupEnv(envPrefix + "_DATA_DIR"); !set {
		dir, err := defaultDataDir()
		if err != nil {
			return nil, err
		}
		c.DataDir = dir
	}
	if err := c.loadCredentials(); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// defaultDataDir is where the data lives when SYNCER_DATA_DIR is not set:
// the service's state directory under systemd (StateDirectory=), else
// ./syncer-data, but never in a current directory other users may write to
// (such as /tmp), where one of them could have made ./syncer-data first or
// could swap it.
func defaultDataDir() (string, error) {
	if sd := os.Getenv("STATE_DIRECTORY"); sd != "" {
		first, _, _ := strings.Cut(sd, ":")
		return first, nil
	}
	const dir = "./syncer-data"
	wd, err := os.Getwd()
	if err != nil {
		return dir, nil
	}
	fi, err := os.Stat(wd)
	if err == nil && fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("SYNCER_DATA_DIR: not set, and the default ./syncer-data would be in %s, which other users may write to (mode %04o); set SYNCER_DATA_DIR to a directory of your own (try \"$HOME/.local/state/syncer\" or \"/var/lib/syncer\"), or run syncer from one", wd, fi.Mode().Perm())
	}
	return dir, nil
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
		b, err := readKeyFile(c.TokenKeyFile, dir)
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
			return fmt.Errorf("%s: %w (%s)", source, err, keyHint)
		}
		c.TokenKey = key
	}
	return nil
}

// keyHint says how to make a good key file.
const keyHint = "make one with: (umask 077; head -c 32 /dev/urandom | xxd -p -c 64 > token.key)"

// readKeyFile reads a token key file, refusing one that other users may
// read (or write): the key is worth as much as every token it seals. A file
// in credDir ($CREDENTIALS_DIRECTORY) is systemd's and exempt: it is
// readable by the service alone whatever its mode bits.
func readKeyFile(path, credDir string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	inCreds := false
	if credDir != "" {
		if rel, err := filepath.Rel(credDir, path); err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel) {
			inCreds = true
		}
	}
	if !inCreds && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable or writable by other users (mode %04o): anyone who reads it can open every token; chmod 600 %s (or use the systemd credential token-key)", path, fi.Mode().Perm(), path)
	}
	return io.ReadAll(io.LimitReader(f, 4096))
}

// parseKey accepts 64 hex digits (with surrounding space) or 32 raw bytes,
// and refuses a weak key: all zeros or much repetition, or 32 characters of
// text (a passphrase, not 32 random bytes).
func parseKey(b []byte) ([]byte, error) {
	var key []byte
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			key = k
		}
	}
	if key == nil && len(b) == 32 {
		if isText(b) {
			return nil, errors.New("this is 32 characters of text, a passphrase, not a key: a token key is 32 random bytes")
		}
		key = b
	}
	if key == nil {
		return nil, fmt.Errorf("a token key is 64 hex digits or 32 raw bytes, this is %d bytes", len(b))
	}
	if weakKey(key) {
		return nil, errors.New("this key is weak (all zeros, or too few different bytes to be random)")
	}
	return key, nil
}

// weakKey: 32 random bytes hold about 30 different values; fewer than 16 is
// all but impossible by chance (all-zero keys, patterns, a repeated word).
func weakKey(k []byte) bool {
	seen := map[byte]bool{}
	for _, c := range k {
		seen[c] = true
	}
	return len(seen) < 16
}

// isText reports whether b is all printable ASCII (and whitespace): 32 random
// bytes are that by chance about once in 10^13.
func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
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
		errs = append(errs, fmt.Errorf("SYNCER_RATE_LIMIT: %v is negative (try \"20\", or 0 for no ceiling)", c.RateLimit))
	}
	switch strings.ToLower(c.Pacing) {
	case "adaptive", "off":
	default:
		errs = append(errs, fmt.Errorf("SYNCER_PACING: %q is not a pacing (adaptive or off)", c.Pacing))
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
	if c.BusyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SYNCER_BUSY_TIMEOUT: %s is not positive (try \"10s\")", c.BusyTimeout))
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
	if !c.PingURL.IsZero() {
		if err := monitor.CheckURL(c.PingURL.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("SYNCER_PING_URL: %v (try \"https://hc-ping.com/<uuid>\"; the value is not shown, it may hold a secret)", err))
		}
	}
	if !c.NotifyURLs.IsZero() {
		if _, err := monitor.ParseNotifyURLs(c.NotifyURLs.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("SYNCER_NOTIFY_URLS: %v (see https://shoutrrr.nickfedor.com for the URL formats)", err))
		}
	}
	if c.NotifyAfter < 1 {
		errs = append(errs, fmt.Errorf("SYNCER_NOTIFY_AFTER: %d is out of range (at least 1; try \"3\")", c.NotifyAfter))
	}
	if c.NotifyTimeout < time.Second {
		errs = append(errs, fmt.Errorf("SYNCER_NOTIFY_TIMEOUT: %s is too short (at least 1s; try \"30s\")", c.NotifyTimeout))
	}
	if c.MetricsAddr != "" {
		if _, err := monitor.ListenAddr(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("SYNCER_METRICS_ADDR: %q is not host:port: %v (try \":9464\")", c.MetricsAddr, err))
		}
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
func checkProviderURL(raw string) error { return provider.CheckBaseURL(raw) }

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

// configVar is one setting as the documentation shows it.
type configVar struct{ Name, Default, Desc string }

// configVars lists every SYNCER_* variable of Config, in the struct's order,
// from its tags: the one source of docs/configuration.md, `syncer -help`
// and the man page.
func configVars() []configVar {
	t := reflect.TypeOf(Config{})
	var out []configVar
	for i := range t.NumField() {
		f := t.Field(i)
		key, ok := f.Tag.Lookup("envconfig")
		if !ok || f.Tag.Get("ignored") == "true" {
			continue
		}
		out = append(out, configVar{Name: envPrefix + "_" + key, Default: f.Tag.Get("default"), Desc: f.Tag.Get("desc")})
	}
	return out
}

// configReference is docs/configuration.md.
func configReference() string {
	var b strings.Builder
	b.WriteString(`# Configuration

<!-- Generated from the Config struct (cmd/syncer/config.go): do not edit.
     Regenerate: go test ./cmd/syncer -run TestConfigurationDocs -update -->

syncer takes its settings from the environment only (prefix ` + "`SYNCER_`" + `);
` + "`syncer -help`" + ` prints this list too. Every value is checked before anything is
written: a bad one exits 2 with a message naming the variable and a good value.
Under systemd the settings live in ` + "`/etc/syncer/syncer.env`" + ` (root:root 0600; every
variable is there, commented, with its default: ` + "`systemd/syncer.env.example`" + `).

The client secrets and the token key may instead come from systemd credentials
(` + "`$CREDENTIALS_DIRECTORY/<name>`" + `, read when the variable is empty):
` + "`everreal-client-secret`, `estateguru-client-secret`, `token-key`" + `. The units
load them from ` + "`/etc/credstore/syncer.<name>`" + ` if present.

Provider URLs must be ` + "`https://`" + `; plain ` + "`http://`" + ` is accepted only for a
loopback host (the sandbox), so a token never crosses a network unencrypted.

| variable | default | meaning |
| --- | --- | --- |
`)
	for _, v := range configVars() {
		def := v.Default
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, strings.ReplaceAll(v.Desc, "|", `\|`))
	}
	return b.String()
}
