package main

// PostgreSQL end to end (issue 16): the README's examples answer alike on
// both engines, several instances share one database without presenting a
// refresh token twice or syncing a connection from two instances in one
// period, and an instance killed mid-run costs its connections one lease.
// They need a server: .ci/postgres starts one (see store/pgstore/pgtest).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store/pgstore/pgtest"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// pgWorld is a world on the same sandbox as base (or a new one) whose
// syncer keeps everything in a fresh PostgreSQL database.
func pgWorld(t *testing.T, sb *sandbox.Sandbox, extra ...string) (*world, string) {
	t.Helper()
	dbURL := pgtest.URL(t)
	w := &world{t: t, sb: sb, dataDir: filepath.Join(t.TempDir(), "data")}
	w.env = append([]string{
		"SYNCER_DATABASE_URL=" + dbURL,
		"SYNCER_TOKEN_KEY_FILE=" + writeKey(t),
	}, extra...)
	return w, dbURL
}

func pgConn(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pgInt(t *testing.T, dbURL, q string, args ...any) int64 {
	t.Helper()
	var n *int64
	if err := pgConn(t, dbURL).QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n == nil {
		return 0
	}
	return *n
}

// pgBackdate is backdate for PostgreSQL: as the superuser, with the
// foreign keys' triggers off so parents and children move apart.
func pgBackdate(t *testing.T, dbURL string, d time.Duration) {
	t.Helper()
	shift := fmt.Sprintf("interval '%d seconds'", int64(d.Seconds()))
	move := func(col string) string {
		return col + ` = to_char((` + col + `::timestamptz - ` + shift + `) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`
	}
	var b strings.Builder
	b.WriteString("BEGIN; SET LOCAL session_replication_role = replica;\n")
	for _, table := range []string{"everreal_snapshot", "everreal_company", "estateguru_snapshot", "estateguru_investment"} {
		set := move("snapshot_at")
		if strings.HasSuffix(table, "snapshot") {
			set += ", " + move("fetched_at")
		}
		b.WriteString("UPDATE " + table + " SET " + set + ";\n")
	}
	b.WriteString("UPDATE connection_lease SET " + move("synced_period") + ";\n")
	b.WriteString("COMMIT;")
	pgtest.Exec(t, pgtest.AdminURL(t, dbURL), b.String())
}

// pgExamples are the README examples that use SQLite's own functions
// (printf, strftime, json_each), as docs/postgres.md gives them for
// PostgreSQL; the others run verbatim on both engines.
var pgExamples = map[string]string{
	exLatestPortfolios: `SELECT connection, snapshot_at, currency,
       (cash_cents / 100.0)::numeric(20, 2) AS cash, investments
FROM latest_estateguru_portfolios
ORDER BY connection;`,
	exLastWeek: `SELECT connection, snapshot_at, value_cents
FROM estateguru_portfolio_history
WHERE snapshot_at >= to_char(now() AT TIME ZONE 'UTC' - interval '7 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
ORDER BY connection, snapshot_at;`,
	exScopes: `SELECT connection, email, j.value AS scope
FROM latest_everreal_users, json_array_elements_text(scopes) AS j(value)
ORDER BY connection, scope;`,
}

func TestPostgresAnswersTheReadmeExamplesLikeSQLite(t *testing.T) {
	if time.Now().UTC().Add(time.Minute).Day() != time.Now().UTC().Day() {
		t.Skip("too close to midnight UTC: the two runs could land in different periods than planned")
	}
	lite := newWorld(t, sandbox.Options{})
	pg, dbURL := pgWorld(t, lite.sb)
	sb := lite.sb
	addSampleInvestor(sb, "inv")
	addSampleUser(sb, "jo@example.com")
	sb.AddEverRealUser(sandbox.EverRealUser{
		Email: "ann@example.com", Password: "pw", FirstName: "Ann", LastName: "Lee",
		Companies: []sandbox.Company{{ID: "c-1", Name: "Acme", IsDefault: true}},
		Scopes:    []string{"offline_access"},
	})
	for _, w := range []*world{lite, pg} {
		w.importEstateGuru("eg", "inv")
		w.importEverReal("er-jo", "jo@example.com")
		w.importEverReal("er-ann", "ann@example.com")
		w.mustRun(0, "", "-once")
	}
	lite.backdate(24 * time.Hour)
	pgBackdate(t, dbURL, 24*time.Hour)
	sb.AddEstateGuruInvestor(sandbox.Investor{
		Name: "inv", Currency: "EUR", Cash: "48873000.14",
		Investments: []sandbox.Investment{
			{Name: "#5XX Bridge loan (Estonia)", Quantity: "3", InvestmentAmount: "10130.00", MarketValue: "10130.00",
				PrincipalLeft: "10130.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE11111"},
			{Name: "Riga offices", Quantity: "1", InvestmentAmount: "250.00", MarketValue: "250.00",
				PrincipalLeft: "250.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "LV33333"},
		},
	})
	sb.SetEverRealScopes("jo@example.com", []string{"offline_access", "company_portfolio_all"})
	for _, w := range []*world{lite, pg} {
		w.mustRun(0, "", "-once")
	}

	for _, q := range allExamples {
		want := lite.csvQuery(q)
		pq := q
		if alt, ok := pgExamples[q]; ok {
			pq = alt
		}
		got := pg.csvQuery(pq)
		if got != want {
			t.Errorf("%s\nPostgreSQL:\n%s\nSQLite:\n%s", pq, got, want)
		}
		if strings.Count(want, "\n") < 2 {
			t.Errorf("%s: SQLite answers no rows; the comparison proves nothing:\n%s", q, want)
		}
	}
	// And every view, whole, but for what differs by nature between two
	// syncs: when they fetched, and the raw answers (EstateGuru echoes a
	// random requestId).
	for _, v := range []struct{ view, cols, order string }{
		{"connections", "name, provider, base_url, state, last_error", "name"},
		{"everreal_users", "connection, snapshot_at, user_id, email, first_name, last_name, is_active, is_tenant, terms_accepted, language, company_id, company_name, partner_id, partner_name, partner_subdomain, scopes", "connection, snapshot_at"},
		{"everreal_companies", "*", "connection, snapshot_at, company_id"},
		{"latest_everreal_companies", "*", "connection, company_id"},
		{"estateguru_portfolios", "connection, snapshot_at, currency, cash_cents, investments, investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents", "connection, snapshot_at"},
		{"estateguru_investments", "*", "connection, snapshot_at, position"},
		{"latest_estateguru_investments", "*", "connection, position"},
		{"estateguru_portfolio_history", "*", "connection, snapshot_at"},
		{"estateguru_investment_changes", "*", "connection, change, loan_id"},
		{"everreal_users_by_company", "*", "company_id, email"},
		{"everreal_scope_changes", "*", "snapshot_at, connection, change, scope"},
		{"sync_results", "run_id, connection, status, error", "run_id, connection"},
	} {
		q := "SELECT " + v.cols + " FROM " + v.view + " ORDER BY " + v.order
		if got, want := pg.csvQuery(q), lite.csvQuery(q); got != want {
			t.Errorf("%s\nPostgreSQL:\n%s\nSQLite:\n%s", q, got, want)
		}
	}
}

// severalWorld: n EstateGuru investors (rotating refresh tokens) and m
// EverReal users imported into one PostgreSQL database.
func severalWorld(t *testing.T, opts sandbox.Options, n, m int, extra ...string) (*world, string, []string) {
	t.Helper()
	base := newWorld(t, opts)
	w, dbURL := pgWorld(t, base.sb, extra...)
	var names []string
	for i := range n {
		inv := fmt.Sprintf("inv-%02d", i)
		addSampleInvestor(w.sb, inv)
		w.importEstateGuru("eg-"+inv, inv)
		names = append(names, "eg-"+inv)
	}
	for i := range m {
		email := fmt.Sprintf("u%02d@example.com", i)
		addSampleUser(w.sb, email)
		w.importEverReal("er-"+email, email)
		names = append(names, "er-"+email)
	}
	return w, dbURL, names
}

// checkShared checks what several instances sharing the database must
// never do: present a refresh token twice, lose a login, or sync one
// connection from two instances in one snapshot period (1m here).
func checkShared(t *testing.T, w *world, dbURL string, afterRun int64) {
	t.Helper()
	st := w.sb.Stats()
	if st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Errorf("refresh tokens presented twice: %d, refused: %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM connections WHERE state <> 'active'"); n != 0 {
		t.Errorf("%d connections are no longer active", n)
	}
	if n := pgInt(t, dbURL, `SELECT count(*) FROM (
		SELECT r.connection_id, substr(r.started_at, 1, 16)
		FROM sync_result r JOIN sync_run run ON run.id = r.run_id
		WHERE r.status = 'ok' AND r.run_id > $1
		GROUP BY 1, 2 HAVING count(DISTINCT run.instance) > 1) twice`, afterRun); n != 0 {
		t.Errorf("%d connections were synced by two instances in one period", n)
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM sync_results WHERE status = 'failed'"); n != 0 {
		t.Errorf("%d connection syncs failed", n)
	}
}

func TestPostgresTwoDaemonsAndTwoOnceRunsShareTheWork(t *testing.T) {
	// Every sync refreshes (access tokens live 1s), and EstateGuru rotates
	// its refresh token on every refresh: a token presented twice would
	// show in the sandbox's counters and as a lost login.
	w, dbURL, names := severalWorld(t, sandbox.Options{AccessTTL: time.Second, Latency: 10 * time.Millisecond}, 12, 4,
		"SYNCER_SNAPSHOT_PERIOD=1m", "SYNCER_SCHEDULE=@every 2s", "SYNCER_CONCURRENCY=4", "SYNCER_DATABASE_LEASE=10s")
	d1 := startDaemon(t, w)
	d2 := startDaemon(t, w)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var onceResults []result
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				res := runBinary(w.environ(), "", "-once")
				mu.Lock()
				onceResults = append(onceResults, res)
				mu.Unlock()
				time.Sleep(time.Second)
			}
		}()
	}
	wg.Wait()
	for _, d := range []*daemonProc{d1, d2} {
		_ = d.cmd.Process.Signal(os.Interrupt)
	}
	for _, d := range []*daemonProc{d1, d2} {
		if code := d.waitExit(t, 30*time.Second); code != 0 {
			t.Errorf("a daemon exited %d:\n%s", code, d.stderr)
		}
	}
	for _, res := range onceResults {
		if res.code != 0 {
			t.Errorf("a -once run: %s", res)
		}
	}
	checkShared(t, w, dbURL, 0)
	if n := pgInt(t, dbURL, "SELECT count(DISTINCT connection) FROM sync_results WHERE status = 'ok'"); n != int64(len(names)) {
		t.Errorf("%d of %d connections were synced", n, len(names))
	}
	if n := pgInt(t, dbURL, "SELECT count(DISTINCT instance) FROM sync_runs WHERE connections_ok > 0"); n < 2 {
		t.Errorf("only %d instance(s) synced anything; the work was not shared", n)
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM sync_runs WHERE status = 'running' OR instance IS NULL"); n != 0 {
		t.Errorf("%d runs are still running or name no instance", n)
	}
}

func TestPostgresInstanceKilledMidRunCostsOneLease(t *testing.T) {
	const lease = 5 * time.Second
	w, dbURL, names := severalWorld(t, sandbox.Options{Latency: 150 * time.Millisecond}, 12, 4,
		"SYNCER_SNAPSHOT_PERIOD=1m", "SYNCER_SCHEDULE=@every 1h", "SYNCER_CONCURRENCY=4",
		"SYNCER_DATABASE_LEASE="+lease.String())
	// A first run refreshes every token; the rest run on valid access
	// tokens, so the kill cannot land between a rotation and its save (a
	// loss no store can prevent, and which SQLite shares).
	w.mustRun(0, "", "-once")
	pgtest.Exec(t, dbURL, "UPDATE connection_lease SET synced_period = NULL")
	started := time.Now().UTC().Truncate(time.Second)
	firstRun := pgInt(t, dbURL, "SELECT max(id) FROM sync_runs")

	a := startDaemon(t, w)
	waitUntil(t, a, "the daemon's first synced connection", func() bool {
		return strings.Contains(a.stderr.String(), "connection synced")
	})
	_ = a.cmd.Process.Kill() // SIGKILL: no release, no run record
	<-a.exited
	killed := time.Now()
	held := pgInt(t, dbURL, "SELECT count(*) FROM connection_lease WHERE holder IS NOT NULL AND expires_at > now()")
	if held == 0 {
		t.Log("the daemon held no lease when killed; the test shows less than it could")
	}

	// Others carry on: -once runs sync what the dead one had not, taking
	// its held connections once their leases end.
	for {
		res := w.run("", "-once")
		if res.code != 0 {
			t.Fatalf("-once after the kill:\n%s", res)
		}
		left := pgInt(t, dbURL, "SELECT count(*) FROM connection_lease WHERE synced_period IS NULL")
		if left == 0 {
			break
		}
		if time.Since(killed) > lease+15*time.Second {
			t.Fatalf("%d connections still unsynced %s after the kill (lease %s)", left, time.Since(killed).Round(time.Second), lease)
		}
		time.Sleep(500 * time.Millisecond)
	}
	checkShared(t, w, dbURL, firstRun)
	if n := pgInt(t, dbURL, "SELECT count(*) FROM connections WHERE last_success_at >= $1", started.Format("2006-01-02T15:04:05Z")); n != int64(len(names)) {
		t.Errorf("%d of %d connections synced since the daemon started", n, len(names))
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM sync_runs WHERE status = 'running'"); n != 0 {
		t.Errorf("%d runs still look like they are running (the dead one's should be closed as interrupted)", n)
	}
}

func TestPostgresConfigurationErrorsExit2WithoutThePassword(t *testing.T) {
	// Without a server: nothing here connects successfully.
	w := newWorld(t, sandbox.Options{})
	key := writeKey(t)
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"SYNCER_DATABASE_URL=mysql://u:hunter2-pw@h/db", "SYNCER_TOKEN_KEY_FILE=" + key}, "SYNCER_DATABASE_URL: not a postgres:// URL"},
		{[]string{"SYNCER_DATABASE_URL=postgres://u:hunter2-pw@h:notaport/db", "SYNCER_TOKEN_KEY_FILE=" + key}, "SYNCER_DATABASE_URL"},
		{[]string{"SYNCER_DATABASE_URL=postgres://u:hunter2-pw@127.0.0.1:1/db"}, "SYNCER_TOKEN_KEY_FILE: a token key is required"},
		{[]string{"SYNCER_DATABASE_URL=postgres://u:hunter2-pw@127.0.0.1:1/db", "SYNCER_TOKEN_KEY_FILE=" + key, "SYNCER_DATABASE_LEASE=1s"}, "SYNCER_DATABASE_LEASE"},
	} {
		w.env = c.env
		cmds := [][]string{{"-once"}, {"status"}, {"query", "SELECT 1"}}
		if strings.Contains(c.want, "KEY") {
			cmds = cmds[:1] // status and query read without the vault: no key
		}
		for _, args := range cmds {
			res := w.run("", args...)
			if res.code != 2 || !strings.Contains(res.stderr, c.want) || strings.Contains(res.stdout+res.stderr, "hunter2") {
				t.Errorf("%v %v: want exit 2 naming %q without the password, got:\n%s", c.env, args, c.want, res)
			}
		}
	}
}

func TestPostgresRefusedLoginExits2WithoutThePassword(t *testing.T) {
	dbURL := pgtest.URL(t)
	w := newWorld(t, sandbox.Options{})
	bad := pgtest.WithUser(dbURL, "syncer", "hunter2-wrong")
	w.env = []string{"SYNCER_DATABASE_URL=" + bad, "SYNCER_TOKEN_KEY_FILE=" + writeKey(t)}
	res := w.run("", "-once")
	if res.code != 2 || !strings.Contains(res.stderr, "SYNCER_DATABASE_URL") || strings.Contains(res.stdout+res.stderr, "hunter2") {
		t.Fatalf("a refused login: want exit 2 naming SYNCER_DATABASE_URL without the password, got:\n%s", res)
	}
	// A different key than the database's: exit 2 naming the key.
	good, _ := pgWorld(t, w.sb)
	addSampleInvestor(w.sb, "inv")
	good.importEstateGuru("eg", "inv")
	other := *good
	other.env = append([]string{}, good.env...)
	other.env[1] = "SYNCER_TOKEN_KEY_FILE=" + writeKey(t)
	res = other.run("", "-once")
	if res.code != 2 || !strings.Contains(res.stderr, "SYNCER_TOKEN_KEY_FILE") {
		t.Fatalf("another key: want exit 2 naming SYNCER_TOKEN_KEY_FILE, got:\n%s", res)
	}
}

func TestPostgresQueryIsReadOnlyAndStatusWorks(t *testing.T) {
	w, dbURL := pgWorld(t, newWorld(t, sandbox.Options{}).sb)
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	for _, q := range []string{"DELETE FROM connection", "DROP VIEW connections", "SET TRANSACTION READ WRITE; DELETE FROM connection", "COMMIT; DELETE FROM connection"} {
		res := w.run("", "query", q)
		if res.code != 1 {
			t.Errorf("%s: want a refusal (exit 1), got:\n%s", q, res)
		}
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM connection"); n != 1 {
		t.Fatalf("%d connections after the refused writes, want 1", n)
	}
	// The reporting role, with docs/postgres.md's grants, queries the
	// views through syncer query (no key needed) and is refused the vault.
	admin := pgtest.AdminURL(t, dbURL)
	role := fmt.Sprintf("rep_%d", time.Now().UnixNano()%1_000_000_000)
	pgtest.Exec(t, admin, "CREATE ROLE "+role+" LOGIN PASSWORD 'rep-pw'")
	t.Cleanup(func() { pgtest.Exec(t, admin, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	grants, err := os.ReadFile(filepath.Join("..", "..", "store", "pgstore", "grants.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dbURL, strings.ReplaceAll(string(grants), "syncer_reporting", role))
	rep := &world{t: t, sb: w.sb, dataDir: w.dataDir, env: []string{"SYNCER_DATABASE_URL=" + pgtest.WithUser(dbURL, role, "rep-pw")}}
	if got := rep.csvQuery("SELECT connection, cash_cents FROM latest_estateguru_portfolios"); got != "connection,cash_cents\neg,4887290014\n" {
		t.Fatalf("the reporting role's query = %q", got)
	}
	res := rep.mustRun(1, "", "query", "SELECT refresh_token FROM vault.token")
	if !strings.Contains(res.stderr, "permission denied") {
		t.Fatalf("the reporting role reading the vault: want permission denied:\n%s", res)
	}
	// status, for monitors, needs no more than the reporting grants.
	res = rep.mustRun(0, "", "status", "-json")
	if !strings.Contains(res.stdout, `"name": "eg"`) || !strings.Contains(res.stdout, `"state_since"`) {
		t.Fatalf("status as the reporting role:\n%s", res)
	}
	res = w.mustRun(0, "", "status", "-json")
	if !strings.Contains(res.stdout, `"name": "eg"`) {
		t.Fatalf("status:\n%s", res)
	}
	res = w.mustRun(0, "", "disconnect", "eg")
	if n := pgInt(t, dbURL, "SELECT count(*) FROM vault.token"); n != 0 {
		t.Fatalf("%d token rows after disconnect\n%s", n, res)
	}
	w.mustRun(2, "", "backup", filepath.Join(t.TempDir(), "b.db"))
}

// The server drops every session of syncer's (as in a restart) several
// times while a daemon syncs, every sync refreshing a rotating token: the
// affected connections fail with a clear error, later runs recover, and no
// login is lost.
func TestPostgresSessionsDroppedMidRunLoseNoToken(t *testing.T) {
	w, dbURL, names := severalWorld(t, sandbox.Options{AccessTTL: time.Second, Latency: 50 * time.Millisecond}, 8, 2,
		"SYNCER_SNAPSHOT_PERIOD=1m", "SYNCER_SCHEDULE=@every 1s", "SYNCER_CONCURRENCY=4", "SYNCER_DATABASE_LEASE=5s")
	admin := pgtest.AdminURL(t, dbURL)
	d := startDaemon(t, w)
	waitUntil(t, d, "the first synced connection", func() bool {
		return strings.Contains(d.stderr.String(), "connection synced")
	})
	for range 4 {
		pgtest.Exec(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		time.Sleep(700 * time.Millisecond)
	}
	dropped := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	waitUntil(t, d, "every connection synced after the last drop", func() bool {
		var n int64
		c, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			return false
		}
		defer c.Close(context.Background())
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM connections WHERE last_success_at >= $1",
			dropped.Format("2006-01-02T15:04:05Z")).Scan(&n); err != nil {
			return false
		}
		return n == int64(len(names))
	})
	_ = d.cmd.Process.Signal(os.Interrupt)
	if code := d.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("the daemon exited %d", code)
	}
	st := w.sb.Stats()
	if st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Errorf("refresh tokens presented twice: %d, refused: %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM connections WHERE state <> 'active'"); n != 0 {
		t.Errorf("%d connections lost their login", n)
	}
	if !strings.Contains(d.stderr.String(), "terminating connection due to administrator command") &&
		!strings.Contains(d.stderr.String(), "conn closed") && !strings.Contains(d.stderr.String(), "unexpected EOF") {
		t.Logf("no failure seen in the daemon's log; the drops may have missed every query:\n%.3000s", d.stderr)
	}
}

func TestPostgresCopyOfASQLiteStoreAnswersEveryViewIdentically(t *testing.T) {
	if time.Now().UTC().Add(time.Minute).Day() != time.Now().UTC().Day() {
		t.Skip("too close to midnight UTC")
	}
	lite := newWorld(t, sandbox.Options{})
	key := writeKey(t)
	lite.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key}
	pg, dbURL := pgWorld(t, lite.sb)
	pg.env[1] = "SYNCER_TOKEN_KEY_FILE=" + key
	addSampleInvestor(lite.sb, "inv")
	addSampleUser(lite.sb, "jo@example.com")
	lite.importEstateGuru("eg", "inv")
	lite.importEverReal("er-jo", "jo@example.com")
	lite.mustRun(0, "", "-once")
	lite.backdate(24 * time.Hour)
	lite.sb.SetEstateGuruCash("inv", "1.00")
	lite.sb.SetEverRealScopes("jo@example.com", []string{"offline_access"})
	lite.mustRun(0, "", "-once")

	res := lite.mustRun(0, "", "copy", "-to", dbURL)
	if !strings.Contains(res.stdout, "verified") || !strings.Contains(res.stderr, "estateguru_investment") {
		t.Fatalf("copy:\n%s", res)
	}
	// Interrupted half-way, as it were: rows gone from the target; run
	// again, it fills them in. Run once more, it changes nothing.
	pgtest.Exec(t, dbURL, "DELETE FROM estateguru_snapshot WHERE snapshot_at = (SELECT max(snapshot_at) FROM estateguru_snapshot); DELETE FROM sync_result")
	lite.mustRun(0, "", "copy", "-to", dbURL)
	again := lite.mustRun(0, "", "copy", "-to", dbURL)
	if again.stdout != res.stdout {
		t.Fatalf("a second copy changed the counts:\n%s\nfirst:\n%s", again.stdout, res.stdout)
	}

	views := map[string]string{
		"connections": "name", "everreal_users": "connection, snapshot_at", "everreal_companies": "connection, snapshot_at, company_id",
		"latest_everreal_users": "connection", "latest_everreal_companies": "connection, company_id",
		"estateguru_portfolios": "connection, snapshot_at", "estateguru_investments": "connection, snapshot_at, position",
		"latest_estateguru_portfolios": "connection", "latest_estateguru_investments": "connection, position",
		"estateguru_portfolio_history": "connection, snapshot_at", "estateguru_investment_changes": "connection, change, loan_id",
		"everreal_users_by_company": "company_id, email", "everreal_scope_changes": "snapshot_at, connection, change, scope",
		"sync_results": "run_id, connection",
	}
	for v, order := range views {
		q := "SELECT * FROM " + v + " ORDER BY " + order
		if got, want := pg.csvQuery(q), lite.csvQuery(q); got != want {
			t.Errorf("%s\nPostgreSQL:\n%s\nSQLite:\n%s", q, got, want)
		}
	}
	q := "SELECT id, trigger, started_at, finished_at, status, connections_ok, connections_failed, connections_skipped, connections_warned FROM sync_runs ORDER BY id"
	if got, want := pg.csvQuery(q), lite.csvQuery(q); got != want {
		t.Errorf("%s\nPostgreSQL:\n%s\nSQLite:\n%s", q, got, want)
	}
	if n := pgInt(t, dbURL, "SELECT count(*) FROM vault.token WHERE refresh_token LIKE 'gcm2:%' AND base_url <> ''"); n != 2 {
		t.Fatalf("%d sealed token rows in the vault, want 2", n)
	}
	// The copied tokens work: PostgreSQL takes over the syncing.
	pg.mustRun(0, "", "-once", "-connection", "eg", "-connection", "er-jo")
	if st := lite.sb.Stats(); st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh tokens presented twice: %d, refused: %d", st.RefreshReuse, st.RefusedRefresh)
	}
	if n := pgInt(t, dbURL, "SELECT max(id) FROM sync_runs"); n != 3 {
		t.Fatalf("the first run after the copy has id %d, want 3 (the ids go on)", n)
	}
}
