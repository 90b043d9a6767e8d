package main

// The operations (issue 11) and security (issue 12) work on PostgreSQL:
// runs record and announce what needs a person as with SQLite, `status`
// needs only the reporting grants, the provider URL is bound to the tokens
// in the vault, and `syncer rekey` re-seals the vault. They need a server:
// .ci/postgres starts one (see store/pgstore/pgtest).

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/monitor"
	"github.com/syncerhq/syncer/store/pgstore/pgtest"
	"github.com/syncerhq/syncer/sync/sandbox"
)

func pgString(t *testing.T, dbURL, q string, args ...any) string {
	t.Helper()
	var s *string
	if err := pgConn(t, dbURL).QueryRow(t.Context(), q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// A connection whose login the provider refuses: every later run is
// partial, counts it skipped with a sync_results row saying why, the
// metrics say so, and each change is announced once, across restarts (each
// -once is a new process), until a re-connect brings it back.
func TestPostgresReauthConnectionIsRecordedAndAnnouncedOnce(t *testing.T) {
	w, dbURL := pgWorld(t, newWorld(t, sandbox.Options{}).sb)
	addSampleInvestor(w.sb, "good")
	addSampleInvestor(w.sb, "acme")
	w.importEstateGuru("good", "good")
	w.importEstateGuru("acme", "acme")
	w.sb.RevokeAll(sandbox.EstateGuru, "acme")
	dir := t.TempDir()
	metricsFile := filepath.Join(dir, "syncer.prom")
	eventsFile := filepath.Join(dir, "events.jsonl")
	w.env = append(w.env, "SYNCER_METRICS_FILE="+metricsFile, "SYNCER_NOTIFY_COMMAND=cat >> "+eventsFile)

	w.mustRun(1, "", "-once") // acme refused: reauth_required
	for range 2 {
		res := w.mustRun(1, "", "-once") // acme not attempted
		if !strings.Contains(res.stderr, "needs re-login") || !strings.Contains(res.stderr, "connection=acme") {
			t.Fatalf("the run should warn of acme:\n%s", res.stderr)
		}
	}
	last := "(SELECT max(id) FROM sync_runs)"
	if got := pgString(t, dbURL, "SELECT status FROM sync_runs WHERE id = "+last); got != "partial" {
		t.Fatalf("last run = %q, want partial\n%s", got, w.run("", "query", "SELECT * FROM sync_results").stdout)
	}
	if got := pgInt(t, dbURL, "SELECT connections_skipped FROM sync_runs WHERE id = "+last); got != 1 {
		t.Fatalf("connections_skipped = %d, want 1", got)
	}
	why := pgString(t, dbURL, "SELECT error FROM sync_results WHERE connection = 'acme' AND status = 'skipped' AND run_id = "+last)
	if !strings.Contains(why, "not attempted") || !strings.Contains(why, "syncer connect estateguru -name acme") {
		t.Fatalf("acme's skipped result = %q", why)
	}
	if a, g := pgString(t, dbURL, "SELECT state_since FROM connections WHERE name = 'acme'"),
		pgString(t, dbURL, "SELECT state_since FROM connections WHERE name = 'good'"); a == "" || a < g {
		t.Fatalf("state_since: acme %q (reauth_required), good %q (active since it was made)", a, g)
	}
	fams := readMetricsFile(t, metricsFile)
	wantMetric(t, fams, "syncer_connection_needs_reauth", map[string]string{"connection": "acme", "provider": "estateguru"}, 1)
	wantMetric(t, fams, "syncer_connection_up", map[string]string{"connection": "good", "provider": "estateguru"}, 1)
	evs := readEvents(t, eventsFile)
	if got := countEvents(evs, monitor.EventReauthRequired, "acme"); got != 1 || len(evs) != 1 {
		t.Fatalf("events = %+v, want one reauth_required for acme over three runs", evs)
	}
	st := findStatus(t, w.statusJSON(1), "acme")
	if st.State != "reauth_required" || st.StateSince == nil || !strings.Contains(st.Fix, "syncer connect estateguru -name acme") {
		t.Fatalf("status of acme = %+v", st)
	}

	w.importEstateGuru("acme", "acme")
	w.mustRun(0, "", "-once")
	w.mustRun(0, "", "-once")
	if got := countEvents(readEvents(t, eventsFile), monitor.EventRecovered, "acme"); got != 1 {
		t.Fatalf("recovered events for acme = %d, want 1", got)
	}
	if got := pgString(t, dbURL, "SELECT status FROM sync_runs WHERE id = "+last); got != "ok" {
		t.Fatalf("last run after the re-connect = %q, want ok", got)
	}
}

// The provider URL is bound to the tokens in schema vault, which the
// reporting role cannot reach: a base_url changed in public.connection
// sends nothing anywhere, and one changed in both places makes the sealed
// tokens unopenable (it is in their additional data).
func TestPostgresTamperedBaseURLSendsNothing(t *testing.T) {
	w, dbURL := pgWorld(t, newWorld(t, sandbox.Options{}).sb)
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEverReal("er", "jo@example.com")
	w.importEstateGuru("eg", "inv")
	if got := pgString(t, dbURL, "SELECT t.base_url FROM vault.token t JOIN connection c ON c.id = t.connection_id WHERE c.name = 'eg'"); got != w.sb.EstateGuruURL {
		t.Fatalf("vault.token.base_url = %q, want %q", got, w.sb.EstateGuruURL)
	}
	vault := func() string {
		return pgString(t, dbURL, "SELECT string_agg(refresh_token || '/' || generation, ',' ORDER BY connection_id) FROM vault.token")
	}
	before := vault()
	evil := newRecorder(t)

	for _, tamper := range []string{
		"UPDATE connection SET base_url = $1",
		"UPDATE connection SET base_url = $1; UPDATE vault.token SET base_url = $1",
	} {
		pgtest.Exec(t, dbURL, strings.ReplaceAll(tamper, "$1", "'"+evil.URL+"'"))
		res := w.mustRun(1, "", "-once")
		if !strings.Contains(res.stderr, "refusing to sync") && !strings.Contains(res.stderr, "does not open") {
			t.Fatalf("want a refusal:\n%s", res)
		}
		if got := evil.requests(); len(got) != 0 {
			t.Fatalf("the tampered URL got requests: %q", got)
		}
		if got := vault(); got != before {
			t.Fatalf("the vault changed: %s, was %s", got, before)
		}
	}
	pgtest.Exec(t, dbURL, "UPDATE connection SET base_url = '"+w.sb.EverRealURL+"' WHERE name = 'er';"+
		"UPDATE connection SET base_url = '"+w.sb.EstateGuruURL+"' WHERE name = 'eg';"+
		"UPDATE vault.token t SET base_url = c.base_url FROM connection c WHERE c.id = t.connection_id")
	w.mustRun(0, "", "-once")
}

// syncer rekey on PostgreSQL: the vault re-sealed in one transaction, the
// old key refused afterwards, and -remove leaves the tokens unsealed for
// instances started with SYNCER_DATABASE_PLAINTEXT_TOKENS.
func TestPostgresRekey(t *testing.T) {
	w, dbURL := pgWorld(t, newWorld(t, sandbox.Options{}).sb)
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er", "jo@example.com")
	w.mustRun(0, "", "-once")
	sealed := pgString(t, dbURL, "SELECT string_agg(refresh_token, ',') FROM vault.token")

	key2 := writeKey(t)
	res := w.mustRun(0, "", "rekey", "-new-key", key2)
	if !strings.Contains(res.stdout, "vault.token: 2 connections") {
		t.Fatalf("rekey should say what it did:\n%s", res)
	}
	if got := pgString(t, dbURL, "SELECT string_agg(refresh_token, ',') FROM vault.token"); got == sealed || !strings.HasPrefix(got, "gcm2:") {
		t.Fatalf("tokens after rekey: %.40s...", got)
	}
	res = w.run("", "-once")
	if res.code != 2 || !strings.Contains(res.stderr, "not the key") {
		t.Fatalf("the old key after a rekey: want exit 2, got:\n%s", res)
	}
	w.env = append(w.env, "SYNCER_TOKEN_KEY_FILE="+key2) // the later one wins
	w.mustRun(0, "", "-once")

	w.mustRun(0, "", "rekey", "-remove")
	res = w.run("", "-once")
	if res.code != 2 {
		t.Fatalf("a key on an unsealed vault: want exit 2, got:\n%s", res)
	}
	w.env = append(w.env, "SYNCER_TOKEN_KEY_FILE=", "SYNCER_DATABASE_PLAINTEXT_TOKENS=true")
	w.mustRun(0, "", "-once")
	if got := pgString(t, dbURL, "SELECT refresh_token FROM vault.token LIMIT 1"); strings.HasPrefix(got, "gcm") {
		t.Fatalf("the vault is still sealed after -remove")
	}
}
