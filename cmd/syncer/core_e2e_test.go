package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/sync/sandbox"
)

func addSampleInvestor(sb *sandbox.Sandbox, name string) {
	sb.AddEstateGuruInvestor(sandbox.Investor{
		Name: name, Currency: "EUR", Cash: "48872900.14",
		Investments: []sandbox.Investment{
			{Name: "#5XX Bridge loan (Estonia)", Quantity: "3", InvestmentAmount: "10130.00", MarketValue: "10130.00",
				PrincipalLeft: "10130.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE11111"},
			{Name: "Tiny", Quantity: "1", InvestmentAmount: "0.29", MarketValue: "0.30", PrincipalLeft: "0.29",
				Profit: "0.01", RealizedIncome: "0.07", Change: "-0.01", LoanID: "LV22222"},
		},
	})
}

func addSampleUser(sb *sandbox.Sandbox, email string) {
	sb.AddEverRealUser(sandbox.EverRealUser{
		Email: email, Password: "pw-" + email, FirstName: "Jo", LastName: "Doe", Language: "en-US",
		CompanyID: "c-1", CompanyName: "Acme", PartnerID: "p-1", PartnerName: "partner", PartnerSubdomain: "acme",
		Companies: []sandbox.Company{{ID: "c-1", Name: "Acme", IsDefault: true}, {ID: "c-2", Name: "Other"}},
		Scopes:    []string{"offline_access", "company_user"},
	})
}

func TestOnceStoresExactSnapshots(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er", "jo@example.com")

	w.mustRun(0, "", "-once")

	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(4887290014); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT investment_amount_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(1013029); got != want {
		t.Fatalf("investment_amount_cents = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT change_cents FROM latest_estateguru_investments WHERE loan_id = 'LV22222'"), int64(-1); got != want {
		t.Fatalf("change_cents = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT loan_id FROM estateguru_investments WHERE quantity = 3"), "EE11111"; got != want {
		t.Fatalf("loan_id = %q, want %q", got, want)
	}
	if got, want := w.queryString("SELECT scopes FROM latest_everreal_users WHERE connection = 'er'"), `["offline_access","company_user"]`; got != want {
		t.Fatalf("scopes = %s, want %s", got, want)
	}
	if got, want := w.queryString("SELECT group_concat(name || ':' || is_default, ',') FROM everreal_companies WHERE connection = 'er'"), "Acme:1,Other:0"; got != want {
		t.Fatalf("companies = %s, want %s", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "ok"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM sync_results WHERE status = 'ok'"), int64(2); got != want {
		t.Fatalf("ok results = %d, want %d", got, want)
	}
	// snapshot_at is the start of the UTC day.
	at := w.queryString("SELECT snapshot_at FROM latest_estateguru_portfolios")
	if want := time.Now().UTC().Truncate(24 * time.Hour).Format(time.RFC3339); at != want {
		t.Fatalf("snapshot_at = %s, want %s", at, want)
	}
}

func TestSecondRunInPeriodReplaces(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	w.mustRun(0, "", "-once")
	w.sb.SetEstateGuruCash("inv", "1.05")
	w.mustRun(0, "", "-once")

	if got, want := w.queryInt("SELECT count(*) FROM estateguru_portfolios"), int64(1); got != want {
		t.Fatalf("portfolio snapshots = %d, want %d (the second run must replace the first)", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM estateguru_investments"), int64(2); got != want {
		t.Fatalf("investment rows = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios"), int64(105); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM sync_runs WHERE status = 'ok'"), int64(2); got != want {
		t.Fatalf("runs = %d, want %d", got, want)
	}
}

func TestRotationSurvivesRepeatedRuns(t *testing.T) {
	// A one-second access token makes every run refresh, and EstateGuru
	// rotates the refresh token on every refresh.
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "inv")
	w.importEstateGuru("eg", "inv")
	for i := 0; i < 4; i++ {
		w.mustRun(0, "", "-once")
	}
	st := w.sb.Stats()
	if st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("refresh reuse = %d, refused = %d; want 0 and 0", st.RefreshReuse, st.RefusedRefresh)
	}
	// import's check + one refresh per run.
	if got, want := st.EstateGuruTokenRequests, 5; got != want {
		t.Fatalf("token requests = %d, want %d", got, want)
	}
}

func TestRefusedAccessTokenIsRefreshedAndRetried(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	w.importEstateGuru("eg", "inv")
	w.importEverReal("er", "jo@example.com")
	w.mustRun(0, "", "-once")
	before := w.sb.Stats()

	w.sb.ExpireAccessTokens() // valid by their expiry, refused by the provider
	w.mustRun(0, "", "-once")
	after := w.sb.Stats()
	if got, want := after.EstateGuruTokenRequests-before.EstateGuruTokenRequests, 1; got != want {
		t.Fatalf("EstateGuru refreshes = %d, want %d", got, want)
	}
	if got, want := after.EverRealTokenRequests-before.EverRealTokenRequests, 1; got != want {
		t.Fatalf("EverReal refreshes = %d, want %d", got, want)
	}
	if got, want := after.DataRequests["estateguru userInvestments"]-before.DataRequests["estateguru userInvestments"], 2; got != want {
		t.Fatalf("data calls = %d, want %d (one refused, one retried)", got, want)
	}
}

func TestInvalidGrantIsolatesOneConnection(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "good")
	addSampleInvestor(w.sb, "bad")
	w.importEstateGuru("good", "good")
	w.importEstateGuru("bad", "bad")
	w.sb.RevokeAll("estateguru", "bad")

	res := w.mustRun(1, "", "-once")
	if !strings.Contains(res.stderr, "invalid_grant") {
		t.Fatalf("the log should say invalid_grant:\n%s", res)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'bad'"), "reauth_required"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	if got := w.queryString("SELECT last_error FROM connections WHERE name = 'bad'"); !strings.Contains(got, "syncer connect") {
		t.Fatalf("last_error %q should tell the person to re-connect", got)
	}
	if got, want := w.queryInt("SELECT count(*) FROM latest_estateguru_portfolios WHERE connection = 'good'"), int64(1); got != want {
		t.Fatalf("good snapshots = %d, want %d", got, want)
	}
	if got, want := w.queryString("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"), "partial"; got != want {
		t.Fatalf("run status = %q, want %q", got, want)
	}

	// The refused token is never presented again.
	before := w.sb.Stats().RefusedRefresh
	w.mustRun(1, "", "-once")
	if got := w.sb.Stats().RefusedRefresh; got != before {
		t.Fatalf("refused refreshes went from %d to %d: the dead token was presented again", before, got)
	}
	status := w.mustRun(1, "", "status")
	if !strings.Contains(status.stdout, "reauth_required") {
		t.Fatalf("status should show reauth_required:\n%s", status)
	}
}

func TestSecretsStayOutOfReportsAndOutput(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addSampleInvestor(w.sb, "inv")
	addSampleUser(w.sb, "jo@example.com")
	egTok := w.sb.IssueEstateGuruRefreshToken("inv")
	erTok := w.sb.IssueEverRealRefreshToken("jo@example.com")
	w.mustRun(0, egTok+"\n", "import", "-provider", "estateguru", "-name", "eg", "-url", w.sb.EstateGuruURL)
	w.mustRun(0, erTok+"\n", "import", "-provider", "everreal", "-name", "er", "-url", w.sb.EverRealURL)
	w.sb.ExpireAccessTokens()
	for _, args := range [][]string{{"-once"}, {"status"}, {"status", "-json"}, {"query", "select * from connections"}} {
		res := w.run("", args...)
		w.noSecrets(res.stdout+res.stderr, egTok, erTok)
	}
	snapshots := filepath.Join(w.dataDir, "snapshots.db")
	for _, s := range append(w.secrets(), egTok, erTok) {
		if fileContains(t, snapshots, s) {
			t.Fatalf("snapshots.db holds a secret (%.12s...)", s)
		}
	}
	info, err := os.Stat(filepath.Join(w.dataDir, "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("tokens.db mode = %v, want %v", got, want)
	}
	info, err = os.Stat(snapshots)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.Mode().Perm(), os.FileMode(0o640); got != want {
		t.Fatalf("snapshots.db mode = %v, want %v", got, want)
	}
}

func TestBadConfigurationTouchesNothing(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	for _, tc := range []struct{ env, want string }{
		{"SYNCER_SCHEDULE=every hour", `SYNCER_SCHEDULE: "every hour" is not a cron spec`},
		{"SYNCER_SNAPSHOT_PERIOD=1d", `SYNCER_SNAPSHOT_PERIOD: "1d" is not a duration`},
		{"SYNCER_CONCURRENCY=many", `SYNCER_CONCURRENCY: "many" is not a whole number`},
		{"SYNCER_ESTATEGURU_URL=http://estateguru.example", "unencrypted"},
		{"SYNCER_LOG_FORMAT=xml", "SYNCER_LOG_FORMAT"},
	} {
		w.env = []string{tc.env}
		res := w.mustRun(2, "", "-once")
		if !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%s: stderr should contain %q:\n%s", tc.env, tc.want, res)
		}
		if _, err := os.Stat(w.dataDir); !os.IsNotExist(err) {
			t.Fatalf("%s: the data directory was created", tc.env)
		}
	}
	w.env = nil
	res := w.mustRun(2, "", "-bogus")
	if !strings.Contains(res.stderr, "-bogus") {
		t.Fatalf("a bad flag should be named:\n%s", res)
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	res := w.mustRun(0, "", "-help")
	for _, v := range []string{"SYNCER_DATA_DIR", "SYNCER_SCHEDULE", "SYNCER_SNAPSHOT_PERIOD", "SYNCER_CONCURRENCY",
		"SYNCER_HTTP_TIMEOUT", "SYNCER_LOG_LEVEL", "SYNCER_LOG_FORMAT", "SYNCER_EVERREAL_CLIENT_ID",
		"SYNCER_EVERREAL_CLIENT_SECRET", "SYNCER_ESTATEGURU_CLIENT_ID", "SYNCER_ESTATEGURU_CLIENT_SECRET",
		"SYNCER_ESTATEGURU_URL", "@every 1h"} {
		if !strings.Contains(res.stdout, v) {
			t.Errorf("-help does not mention %s", v)
		}
	}
}
