package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// cmdDemo runs the whole job against the built-in sandbox: two accounts of
// each provider connected the documented ways, one sync, and what it stored.
func setupDemo(fs *flag.FlagSet) func(e env, args []string) error {
	dir := fs.String("dir", "syncer-demo", "data `directory` for the demo")
	return func(e env, args []string) error { return demo(e, args, dir) }
}

func demo(e env, args []string, dir *string) error {
	if len(args) > 0 {
		return usagef("demo takes no arguments")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if os.Getenv("SYNCER_LOG_LEVEL") == "" {
		// Five runs of four connections: the per-connection lines would
		// bury what the demo shows. SYNCER_LOG_LEVEL=info brings them back.
		a.log = newLogger(e.stderr, "warn", a.cfg.LogFormat, a.cfg.secrets())
	}

	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		return fmt.Errorf("starting the sandbox: %w", err)
	}
	defer sb.Close()

	// The sandbox's own client credentials; nothing real is used or needed.
	a.cfg.DataDir = *dir
	a.cfg.DatabaseURL = "" // the demo is SQLite in its own directory
	a.cfg.EverRealClientID, a.cfg.EverRealClientSecret = "everreal-sandbox-client", "everreal-sandbox-secret"
	a.cfg.EstateGuruClientID, a.cfg.EstateGuruClientSecret = "estateguru-sandbox-client", "estateguru-sandbox-secret"
	a.cfg.RateLimit = 0
	if err := a.openStore(e.ctx); err != nil {
		return err
	}

	addDemoAccounts(sb)

	ctx := e.ctx
	for _, u := range []struct{ name, email, password string }{
		{"everreal-anna", "anna.admin@example.com", "demo-password-anna"},
		{"everreal-ben", "ben.broker@example.com", "demo-password-ben"},
	} {
		tok, err := a.everReal(sb.EverRealURL).PasswordGrant(ctx, u.email, provider.Secret(u.password))
		if err != nil {
			return err
		}
		if err := saveConnection(e, a, u.name, "everreal", sb.EverRealURL, tok, true); err != nil {
			return err
		}
	}
	// One EstateGuru account through the documented authorize call, one
	// through a refresh token imported from elsewhere.
	auth, err := a.estateGuru(sb.EstateGuruURL).Authorize(ctx, "")
	if err != nil {
		return err
	}
	if err := saveConnection(e, a, "estateguru-seed", "estateguru", sb.EstateGuruURL, auth.Token, true); err != nil {
		return err
	}
	imported := provider.Secret(sb.IssueEstateGuruRefreshToken("generated-25"))
	tok, err := a.estateGuru(sb.EstateGuruURL).Refresh(ctx, imported)
	if err != nil {
		return err
	}
	if err := saveConnection(e, a, "estateguru-generated", "estateguru", sb.EstateGuruURL, tok, true); err != nil {
		return err
	}

	// Several periods of history, oldest first, so the history and changes
	// views have something to compare: the clock of each run is set back
	// one period at a time, and the investors' portfolios move between runs.
	s := a.syncer()
	st := a.store.(*store.Store) // the demo is always SQLite (above)
	now := time.Now().UTC()
	var sum sync.Summary
	for i := range demoPeriods {
		at := now.Add(-time.Duration(demoPeriods-1-i) * a.cfg.SnapshotPeriod)
		clock := func() time.Time { return at }
		if i == demoPeriods-1 {
			clock = time.Now // the newest run is a real one
		}
		s.Now, st.Now = clock, clock
		evolveDemoInvestors(sb, i)
		if sum, err = s.Run(ctx, sync.TriggerDemo, nil); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "sync run %d (period of %s): %s, %d connections ok, %d failed\n", sum.RunID,
			store.PeriodStart(at, a.cfg.SnapshotPeriod).Format(time.RFC3339), sum.Status, sum.OK, sum.Failed)
		if sum.NeedsAttention() {
			break
		}
	}
	fmt.Fprintln(e.stdout)

	db, err := store.OpenReports(ctx, *dir)
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT connection, snapshot_at, currency, cash_cents, investments,
		market_value_cents, profit_cents FROM latest_estateguru_portfolios ORDER BY connection`)
	if err != nil {
		return err
	}
	cols, err := rows.Columns()
	if err == nil {
		err = writeRows(rows, cols, newTableWriter(e.stdout, false))
	}
	rows.Close()
	if err != nil {
		return err
	}

	db.Close()
	path := filepath.Join(*dir, store.SnapshotsFile)
	self := selfCommand()
	q := shellQuote(*dir)
	fmt.Fprintf(e.stdout, `
Stored in %s, %d periods of history. Try:

  SYNCER_DATA_DIR=%s %s query 'select connection, email, company_name, scopes from latest_everreal_users'
  SYNCER_DATA_DIR=%s %s query 'select connection, snapshot_at, value_cents, value_change_cents from estateguru_portfolio_history'
  SYNCER_DATA_DIR=%s %s query 'select connection, change, loan_id, name from estateguru_investment_changes'
  SYNCER_DATA_DIR=%s %s status
  sqlite3 %s 'select * from latest_estateguru_portfolios'

Run the demo again to see a second run in the same period replace, not add,
each snapshot. To try the daemon against the same fakes: %s sandbox
`, path, demoPeriods, q, self, q, self, q, self, q, self, shellQuote(path), self)
	return summaryError(sum)
}

// demoPeriods is how many periods of history the demo fills.
const demoPeriods = 5

// addDemoAccounts gives the sandbox the demo's two EverReal users and two
// EstateGuru investors.
func addDemoAccounts(sb *sandbox.Sandbox) {
	sb.AddEverRealUser(sandbox.EverRealUser{
		Email: "anna.admin@example.com", Password: "demo-password-anna", FirstName: "Anna", LastName: "Admin",
		Language: "en-US", CompanyID: "c-1000", CompanyName: "Demo Property Management",
		PartnerID: "p-1", PartnerName: "demo-partner", PartnerSubdomain: "demo",
		Companies: []sandbox.Company{{ID: "c-1000", Name: "Demo Property Management", IsDefault: true}, {ID: "c-2000", Name: "Demo Lettings"}},
	})
	sb.AddEverRealUser(sandbox.EverRealUser{
		Email: "ben.broker@example.com", Password: "demo-password-ben", FirstName: "Ben", LastName: "Broker",
		Language: "de-DE", CompanyID: "c-2000", CompanyName: "Demo Lettings",
		PartnerID: "p-1", PartnerName: "demo-partner", PartnerSubdomain: "demo",
		Companies: []sandbox.Company{{ID: "c-2000", Name: "Demo Lettings", IsDefault: true}},
	})
	// The first investor is the seed document's own sample.
	sb.AddEstateGuruInvestor(sandbox.Investor{
		Name: "seed-sample", Currency: "EUR", Cash: "48872900.14",
		Investments: []sandbox.Investment{{
			Name: "#5XX Bridge loan (Estonia)", Quantity: "3", InvestmentAmount: "10130.00", MarketValue: "10130.00",
			PrincipalLeft: "10130.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE11111",
		}},
	})
	evolveDemoInvestors(sb, demoPeriods-1)

}

// evolveDemoInvestors sets the investors' portfolios for period i: cash
// moves, the generated investor gains an investment each period and, in
// the last, one of the old ones is repaid.
func evolveDemoInvestors(sb *sandbox.Sandbox, i int) {
	sb.SetEstateGuruCash("seed-sample", fmt.Sprintf("%d.14", 48872900-1000*(demoPeriods-1-i)))
	gen := sandbox.GenerateInvestor("generated-25", 21+i, 42)
	if i == demoPeriods-1 {
		gen.Investments = append(gen.Investments[:3:3], gen.Investments[4:]...)
	}
	sb.AddEstateGuruInvestor(gen)
}
