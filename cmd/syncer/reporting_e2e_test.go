package main

// The reporting surface, end to end: the example queries of docs/views.md run
// through `syncer query` against sandbox history, the query command's
// formats and its refusal to write, backups, readers alongside the writer,
// and retention.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// backdate moves every snapshot in the data directory d into the past, as
// if it had been taken d earlier: how the test gets several snapshot periods
// without waiting for them. It goes through SQLite like any client (never
// behind its back), with foreign keys off so parents and children can move
// together, in two steps so no shifted key collides with one not yet
// shifted.
func (w *world) backdate(d time.Duration) {
	w.t.Helper()
	db, err := sql.Open("sqlite", store.DSN(filepath.Join(w.dataDir, store.SnapshotsFile),
		[]string{"busy_timeout(10000)", "foreign_keys(OFF)"}, nil))
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	shift := fmt.Sprintf("'-%d seconds'", int64(d.Seconds()))
	tx, err := db.Begin()
	if err != nil {
		w.t.Fatal(err)
	}
	defer tx.Rollback()
	for _, table := range []string{"everreal_snapshot", "everreal_company", "estateguru_snapshot", "estateguru_investment"} {
		stmts := []string{
			"UPDATE " + table + " SET snapshot_at = '~' || strftime('%Y-%m-%dT%H:%M:%SZ', snapshot_at, " + shift + ")",
			"UPDATE " + table + " SET snapshot_at = substr(snapshot_at, 2)",
		}
		if !strings.HasSuffix(table, "company") && !strings.HasSuffix(table, "investment") {
			stmts = append(stmts, "UPDATE "+table+" SET fetched_at = strftime('%Y-%m-%dT%H:%M:%SZ', fetched_at, "+shift+")")
		}
		for _, q := range stmts {
			if _, err := tx.Exec(q); err != nil {
				w.t.Fatalf("%s: %v", q, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		w.t.Fatal(err)
	}
}

// The example queries of docs/views.md, verbatim. Each is run by
// TestViewsDocExamples and its answer checked; TestViewsDocMatchesExamples
// fails if the doc shows an SQL block that is not in this list.
const (
	exLatestPortfolios = `SELECT connection, snapshot_at, currency,
       printf('%.2f', cash_cents / 100.0) AS cash, investments
FROM latest_estateguru_portfolios
ORDER BY connection;`

	exPortfolioHistory = `SELECT connection, snapshot_at, value_cents, value_change_cents,
       cash_change_cents, market_value_change_cents
FROM estateguru_portfolio_history
ORDER BY connection, snapshot_at;`

	exLastWeek = `SELECT connection, snapshot_at, value_cents
FROM estateguru_portfolio_history
WHERE snapshot_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-7 days')
ORDER BY connection, snapshot_at;`

	exInvestmentChanges = `SELECT connection, change, loan_id, name, market_value_cents
FROM estateguru_investment_changes
ORDER BY connection, change, loan_id;`

	exUsersByCompany = `SELECT company_name, email, is_default, is_current
FROM everreal_users_by_company
ORDER BY company_name, email;`

	exScopeChanges = `SELECT snapshot_at, connection, email, change, scope
FROM everreal_scope_changes
ORDER BY snapshot_at, connection, change, scope;`

	exRuns = `SELECT id, trigger, status, connections_ok, connections_failed
FROM sync_runs
ORDER BY id DESC
LIMIT 5;`

	exScopes = `SELECT connection, email, j.value AS scope
FROM latest_everreal_users, json_each(scopes) AS j
ORDER BY connection, scope;`

	// One-liners of the README's shell examples (syncer query '...').
	exShellConnections = `SELECT name, provider, state FROM connections ORDER BY name`
	exShellJSON        = `SELECT connection, cash_cents FROM latest_estateguru_portfolios`
)

var allExamples = []string{exLatestPortfolios, exPortfolioHistory, exLastWeek, exInvestmentChanges, exUsersByCompany,
	exScopeChanges, exRuns, exScopes, exShellConnections, exShellJSON}

// TestViewsDocMatchesExamples: every ```sql block in docs/views.md (where
// the README's "Querying your data" section went) is one of the examples
// tested here, so the docs cannot show a query nobody ran. (The README's
// own examples run in TestReadmeExamples.)
func TestViewsDocMatchesExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "views.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(b)
	// The ```sql blocks, and the SQL quoted in `syncer query ... '...'`
	// command lines.
	var shown []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(section, -1) {
		shown = append(shown, m[1])
	}
	sqlBlocks := len(shown)
	for _, m := range regexp.MustCompile(`syncer query[^'\n]*'([^']+)'`).FindAllStringSubmatch(section, -1) {
		shown = append(shown, m[1])
	}
	if sqlBlocks == 0 || len(shown) == sqlBlocks {
		t.Fatalf(`docs/views.md should have sql blocks and syncer query command lines; found %d and %d`, sqlBlocks, len(shown)-sqlBlocks)
	}
	tested := map[string]bool{}
	for _, q := range allExamples {
		tested[strings.TrimSpace(q)] = true
	}
	for _, q := range shown {
		if q = strings.TrimSpace(q); !tested[q] {
			t.Errorf("docs/views.md example is not run by any test (add it to allExamples and TestViewsDocExamples):\n%s", q)
		}
	}
}

// reportingWorld is two days of history: an investor whose cash rose and
// whose portfolio swapped one loan for another, and two EverReal users, one
// of whom lost a scope and gained another.
func reportingWorld(t *testing.T) (w *world, yesterday, today string) {
	w = newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.sb.AddEverRealUser(sandbox.EverRealUser{
		Email: "ann@example.com", Password: "pw", FirstName: "Ann", LastName: "Lee",
		Companies: []sandbox.Company{{ID: "c-1", Name: "Acme", IsDefault: true}},
		Scopes:    []string{"offline_access"},
	})
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er-jo", "jo@example.com")
	w.importEverReal("er-ann", "ann@example.com")

	w.mustRun(0, "", "-once")
	w.backdate(24 * time.Hour)

	w.sb.AddEstateGuruInvestor(sandbox.Investor{
		Name: "inv", Currency: "EUR", Cash: "48873000.14", // +100.00
		Investments: []sandbox.Investment{
			{Name: "#5XX Bridge loan (Estonia)", Quantity: "3", InvestmentAmount: "10130.00", MarketValue: "10130.00",
				PrincipalLeft: "10130.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE11111"},
			{Name: "Riga offices", Quantity: "1", InvestmentAmount: "250.00", MarketValue: "250.00",
				PrincipalLeft: "250.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "LV33333"},
		},
	})
	w.sb.SetEverRealScopes("jo@example.com", []string{"offline_access", "company_portfolio_all"})
	w.mustRun(0, "", "-once")

	now := time.Now().UTC().Truncate(24 * time.Hour)
	return w, now.Add(-24 * time.Hour).Format(store.TimeFormat), now.Format(store.TimeFormat)
}

// csvQuery runs SQL through `syncer query -format csv` and returns the
// records, one line each with "," between fields, CRLFs made plain.
func (w *world) csvQuery(q string) string {
	w.t.Helper()
	res := w.mustRun(0, "", "query", "-format", "csv", q)
	return strings.ReplaceAll(res.stdout, "\r\n", "\n")
}

func TestViewsDocExamples(t *testing.T) {
	if time.Now().UTC().Add(time.Minute).Day() != time.Now().UTC().Day() {
		t.Skip("too close to midnight UTC: the two runs could land in different periods than planned")
	}
	w, yesterday, today := reportingWorld(t)

	// Values: yesterday cash 48872900.14 + market value 10130.00 + 0.30;
	// today cash 48873000.14 + 10130.00 + 250.00.
	const v1, v2 = 4887290014 + 1013000 + 30, 4887300014 + 1013000 + 25000
	cases := []struct{ sql, want string }{
		{exLatestPortfolios, "connection,snapshot_at,currency,cash,investments\n" +
			"eg," + today + ",EUR,48873000.14,2\n"},
		{exPortfolioHistory, "connection,snapshot_at,value_cents,value_change_cents,cash_change_cents,market_value_change_cents\n" +
			fmt.Sprintf("eg,%s,%d,,,\n", yesterday, v1) +
			fmt.Sprintf("eg,%s,%d,%d,%d,%d\n", today, v2, v2-v1, 10000, 25000-30)},
		{exLastWeek, "connection,snapshot_at,value_cents\n" +
			fmt.Sprintf("eg,%s,%d\neg,%s,%d\n", yesterday, v1, today, v2)},
		{exInvestmentChanges, "connection,change,loan_id,name,market_value_cents\n" +
			"eg,appeared,LV33333,Riga offices,25000\n" +
			"eg,disappeared,LV22222,Tiny,30\n"},
		{exUsersByCompany, "company_name,email,is_default,is_current\n" +
			"Acme,ann@example.com,1,1\n" +
			"Acme,jo@example.com,1,1\n" +
			"Other,jo@example.com,0,0\n"},
		{exScopeChanges, "snapshot_at,connection,email,change,scope\n" +
			today + ",er-jo,jo@example.com,added,company_portfolio_all\n" +
			today + ",er-jo,jo@example.com,removed,company_user\n"},
		{exRuns, "id,trigger,status,connections_ok,connections_failed\n" +
			"2,once,ok,3,0\n1,once,ok,3,0\n"},
		{exScopes, "connection,email,scope\n" +
			"er-ann,ann@example.com,offline_access\n" +
			"er-jo,jo@example.com,company_portfolio_all\n" +
			"er-jo,jo@example.com,offline_access\n"},
		{exShellConnections, "name,provider,state\neg,estateguru,active\ner-ann,everreal,active\ner-jo,everreal,active\n"},
		{exShellJSON, "connection,cash_cents\neg,4887300014\n"},
	}
	if len(cases) != len(allExamples) {
		t.Fatalf("%d cases for %d examples", len(cases), len(allExamples))
	}
	for _, c := range cases {
		if got := w.csvQuery(c.sql); got != c.want {
			t.Errorf("%s\ngot:\n%s\nwant:\n%s", c.sql, got, c.want)
		}
	}
	// As the README runs them: the table on a terminal, JSON, SQL on stdin.
	res := w.mustRun(0, "", "query", exShellConnections)
	if got, want := strings.Fields(strings.Split(res.stdout, "\n")[1]), []string{"eg", "estateguru", "active"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("table row = %v, want %v:\n%s", got, want, res.stdout)
	}
	res = w.mustRun(0, "", "query", "-format", "json", exShellJSON)
	if got, want := strings.Join(strings.Fields(res.stdout), ""), `[{"connection":"eg","cash_cents":4887300014}]`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
	res = w.mustRun(0, exPortfolioHistory, "query", "-format", "csv")
	if got, want := strings.ReplaceAll(res.stdout, "\r\n", "\n"), cases[1].want; got != want {
		t.Errorf("history from stdin:\n%s\nwant:\n%s", got, want)
	}
}

func TestQueryFormats(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")

	// table: a header and aligned columns.
	res := w.mustRun(0, "", "query", "SELECT connection, loan_id, market_value_cents FROM latest_estateguru_investments ORDER BY loan_id")
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if got, want := len(lines), 3; got != want {
		t.Fatalf("table has %d lines, want %d:\n%s", got, want, res.stdout)
	}
	for i, word := range []string{"loan_id", "EE11111", "LV22222"} {
		if got, want := strings.Index(lines[i], word), strings.Index(lines[0], "loan_id"); got != want || got <= 0 {
			t.Fatalf("column 2 starts at %d in line %d, want %d (aligned):\n%s", got, i, want, res.stdout)
		}
	}

	// csv: RFC 4180, quoting only what needs it, NULL empty, CRLF.
	tricky := `SELECT 'a,b' AS comma, 'say "hi"' AS quote, 'two' || char(10) || 'lines' AS newline, NULL AS missing, 12 AS n`
	res = w.mustRun(0, "", "query", "-format", "csv", tricky)
	if got, want := res.stdout, "comma,quote,newline,missing,n\r\n\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,12\r\n"; got != want {
		t.Fatalf("csv = %q, want %q", got, want)
	}

	// json: an array of objects with real types; SQL from stdin.
	res = w.mustRun(0, tricky+";\n", "query", "-format", "json")
	var objs []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &objs); err != nil {
		t.Fatalf("json output does not parse: %v\n%s", err, res.stdout)
	}
	want := map[string]any{"comma": "a,b", "quote": `say "hi"`, "newline": "two\nlines", "missing": nil, "n": float64(12)}
	if len(objs) != 1 || fmt.Sprint(objs[0]) != fmt.Sprint(want) {
		t.Fatalf("json = %v, want [%v]", objs, want)
	}
	res = w.mustRun(0, "", "query", "-format", "json", "SELECT * FROM connections WHERE name = 'nobody'")
	if got, want := strings.TrimSpace(res.stdout), "[]"; got != want {
		t.Fatalf("json with no rows = %q, want %q", got, want)
	}
	res = w.mustRun(0, "", "query", "-format", "json", "SELECT cash_cents FROM latest_estateguru_portfolios")
	if got, want := strings.Join(strings.Fields(res.stdout), ""), `[{"cash_cents":4887290014}]`; got != want {
		t.Fatalf("json cents = %s, want %s (exact integers)", got, want)
	}

	// Mistakes: SQLite's own message, exit 1; a bad flag, exit 2.
	res = w.mustRun(1, "", "query", "SELEC 1")
	if !strings.Contains(res.stderr, `near "SELEC": syntax error`) {
		t.Fatalf("a syntax error should show SQLite's message:\n%s", res)
	}
	res = w.mustRun(1, "", "query", "SELECT * FROM no_such_view")
	if !strings.Contains(res.stderr, "no such table: no_such_view") {
		t.Fatalf("a missing table should show SQLite's message:\n%s", res)
	}
	w.mustRun(2, "", "query", "-format", "xml", "SELECT 1")
	w.mustRun(2, "", "query")
}

func TestQueryCannotWrite(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	elsewhere := filepath.Join(t.TempDir(), "other.db")

	for _, q := range []string{
		"DELETE FROM connection",
		"DROP VIEW connections",
		// query_only is a pragma anyone may turn off; mode=ro is not.
		"PRAGMA query_only = 0; DELETE FROM connection",
		"SELECT 1; DELETE FROM connection",
	} {
		res := w.mustRun(1, "", "query", q)
		if !strings.Contains(res.stderr, "readonly database") {
			t.Fatalf("%s: want SQLite's read-only refusal:\n%s", q, res)
		}
	}
	// Nor can it reach another file to write.
	for _, q := range []string{
		"ATTACH '" + elsewhere + "' AS x",
		"VACUUM INTO '" + elsewhere + "'",
	} {
		res := w.mustRun(1, "", "query", q)
		if !strings.Contains(res.stderr, "too many attached databases") {
			t.Fatalf("%s: want SQLite's refusal:\n%s", q, res)
		}
		if _, err := os.Stat(elsewhere); err == nil {
			t.Fatalf("%s created %s", q, elsewhere)
		}
	}
	if got, want := w.queryInt("SELECT count(*) FROM connections"), int64(1); got != want {
		t.Fatalf("connections = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios"), int64(4887290014); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
}

// TestSyncSucceedsUnderAnOpenReader: a reporting session (as the sqlite3 CLI
// opens it: read-write, no busy timeout) holds a read transaction open
// across a sync. The sync commits, the reader keeps its consistent view
// until it ends, and the WAL, pinned meanwhile, is truncated by the first
// run after.
func TestSyncSucceedsUnderAnOpenReader(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")

	path := filepath.Join(w.dataDir, store.SnapshotsFile)
	cli, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	conn, err := cli.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	readCash := func() int64 {
		var c int64
		if err := conn.QueryRowContext(ctx, "SELECT cash_cents FROM latest_estateguru_portfolios").Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got, want := readCash(), int64(4887290014); got != want {
		t.Fatalf("cash before = %d, want %d", got, want)
	}

	w.sb.SetEstateGuruCash("inv", "1.05")
	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "WAL not truncated") {
		t.Fatalf("the run should note that a reader kept the WAL:\n%s", res)
	}
	if got, want := readCash(), int64(4887290014); got != want {
		t.Fatalf("the open transaction's view changed: cash = %d, want %d", got, want)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL should still hold the new snapshot while the reader needs the old one (%v)", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got, want := readCash(), int64(105); got != want {
		t.Fatalf("cash after the reader's transaction = %d, want %d", got, want)
	}

	// The reader's connection stays open (so closing the binary's own
	// connections does not remove the WAL): only the checkpoint can.
	w.mustRun(0, "", "-once")
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Fatalf("the WAL is %d bytes after a run with no reader holding it, want 0", fi.Size())
	}
}

func TestBackupWhileSyncing(t *testing.T) {
	w := newWorld(t, sandbox.Options{Latency: 50 * time.Millisecond})
	w.sb.AddEstateGuruInvestor(sandbox.GenerateInvestor("big", 3000, 1))
	addSampleInvestor(w.sb, "small")
	w.importEstateGuru("big", "big")
	w.importEstateGuru("small", "small")
	w.mustRun(0, "", "-once")
	w.backdate(24 * time.Hour)

	dir := t.TempDir()
	var wg sync.WaitGroup
	var syncRes result
	wg.Add(1)
	go func() {
		defer wg.Done()
		syncRes = w.run("", "-once")
	}()
	var backups []string
	for i := 0; i < 3; i++ {
		out := filepath.Join(dir, fmt.Sprintf("b%d.db", i))
		res := w.mustRun(0, "", "backup", out)
		if !strings.Contains(res.stdout, "backed up to "+out) {
			t.Fatalf("backup output:\n%s", res)
		}
		backups = append(backups, out)
	}
	wg.Wait()
	if syncRes.code != 0 {
		t.Fatalf("the sync beside the backups failed:\n%s", syncRes)
	}
	for _, b := range backups {
		info, err := os.Stat(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.Mode().Perm(), os.FileMode(0o640); got != want {
			t.Fatalf("%s mode = %v, want %v", b, got, want)
		}
		db, err := sql.Open("sqlite", "file:"+b+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var bad, snaps int
		// Whole snapshots only: each portfolio's count matches its rows.
		err = db.QueryRow(`SELECT count(*), sum(investments <> (SELECT count(*) FROM estateguru_investments i
			WHERE i.connection_id = p.connection_id AND i.snapshot_at = p.snapshot_at)) FROM estateguru_portfolios p`).Scan(&snaps, &bad)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if snaps < 2 || bad != 0 {
			t.Fatalf("%s: %d snapshots, %d inconsistent; want at least 2, none", b, snaps, bad)
		}
	}
	res := w.mustRun(1, "", "backup", backups[0])
	if !strings.Contains(res.stderr, "already exists") {
		t.Fatalf("a backup onto an existing file should be refused:\n%s", res)
	}
	w.mustRun(2, "", "backup")
}

func TestRetentionAfterSuccessfulRuns(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	w.env = append(w.env, "SYNCER_RETENTION=72h", "SYNCER_RETRIES=0")
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	w.backdate(2 * 24 * time.Hour)
	w.mustRun(0, "", "-once") // retention applies, but nothing is 72h old yet
	// Now two snapshots, 7 and 5 days old: both past the retention.
	w.backdate(5 * 24 * time.Hour)
	if got, want := w.queryInt("SELECT count(*) FROM estateguru_portfolios"), int64(2); got != want {
		t.Fatalf("snapshots = %d, want %d", got, want)
	}

	// A failed run deletes nothing: history is never aged out by a run
	// that could not replace it.
	w.sb.Inject(sandbox.EstateGuruInvestments, sandbox.Fault{Status: 503, Body: "down"})
	w.mustRun(1, "", "-once")
	if got, want := w.queryInt("SELECT count(*) FROM estateguru_portfolios"), int64(2); got != want {
		t.Fatalf("snapshots after a failed run = %d, want %d", got, want)
	}

	// The next run succeeds: both old snapshots go, the new one stays.
	res := w.mustRun(0, "", "-once")
	if !strings.Contains(res.stderr, "retention dropped old snapshots") {
		t.Fatalf("the run should log what retention dropped:\n%s", res)
	}
	if got, want := w.queryString("SELECT group_concat(snapshot_at) FROM estateguru_portfolios"), time.Now().UTC().Truncate(24*time.Hour).Format(store.TimeFormat); got != want {
		t.Fatalf("snapshots left = %s, want only today's %s", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM estateguru_investments"), int64(2); got != want {
		t.Fatalf("investment rows = %d, want %d (the old snapshots' went with them)", got, want)
	}
}
