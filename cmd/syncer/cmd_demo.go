package main

import (
	"fmt"
	"path/filepath"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// cmdDemo runs the whole job against the built-in sandbox: two accounts of
// each provider connected the documented ways, one sync, and what it stored.
func cmdDemo(e env, args []string) error {
	fs := newFlagSet("demo", e)
	dir := fs.String("dir", "syncer-demo", "data directory for the demo")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("demo takes no arguments")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()

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
	sb.AddEstateGuruInvestor(sandbox.GenerateInvestor("generated-25", 25, 42))

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

	s := a.syncer()
	sum, err := s.Run(ctx, sync.TriggerDemo, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nsync run %d: %s, %d connections ok, %d failed\n\n", sum.RunID, sum.Status, sum.OK, sum.Failed)

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
		err = writeRows(rows, cols, &tableWriter{w: newTabWriter(e.stdout)})
	}
	rows.Close()
	if err != nil {
		return err
	}

	db.Close()
	path := filepath.Join(*dir, store.SnapshotsFile)
	fmt.Fprintf(e.stdout, `
Stored in %s. Try:

  sqlite3 %s 'select * from latest_estateguru_portfolios'
  SYNCER_DATA_DIR=%s syncer query 'select connection, email, company_name, scopes from latest_everreal_users'
  SYNCER_DATA_DIR=%s syncer query -format csv 'select * from latest_estateguru_investments'
  SYNCER_DATA_DIR=%s syncer status

Run the demo again to see a second run in the same period replace, not add,
each snapshot.
`, path, path, *dir, *dir, *dir)
	return summaryError(sum)
}
