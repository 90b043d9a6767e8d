package main

// PostgreSQL end to end (issue 16): the README's examples answer alike on
// both engines, several instances share one database without presenting a
// refresh token twice or syncing a connection from two instances in one
// period, and an instance killed mid-run costs its connections one lease.
// They need a server: .ci/postgres starts one (see store/pgstore/pgtest).

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
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
