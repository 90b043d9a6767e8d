package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// The README's first command: the demo stores snapshots a newcomer can read,
// and running it again replaces the day's snapshots instead of adding.
func TestDemoStoresReadableSnapshots(t *testing.T) {
	w := newWorld(t, sandbox.Options{}) // for the harness only; the demo starts its own sandbox
	dir := filepath.Join(t.TempDir(), "syncer-demo")
	for i := 0; i < 2; i++ {
		res := w.mustRun(0, "", "demo", "-dir", dir)
		if !strings.Contains(res.stdout, "latest_estateguru_portfolios") || !strings.Contains(res.stdout, "4887290014") {
			t.Fatalf("the demo should show the stored portfolios and what to try:\n%s", res)
		}
	}
	db, err := store.OpenReports(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var portfolios, users, runs int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM estateguru_portfolios), (SELECT count(*) FROM everreal_users),
		(SELECT count(*) FROM sync_runs WHERE trigger = 'demo' AND status = 'ok')`).Scan(&portfolios, &users, &runs); err != nil {
		t.Fatal(err)
	}
	if portfolios != 2 || users != 2 || runs != 2 {
		t.Fatalf("portfolios = %d, users = %d, ok demo runs = %d; want 2, 2, 2", portfolios, users, runs)
	}
	var cash int64
	if err := db.QueryRow(`SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'estateguru-seed'`).Scan(&cash); err != nil {
		t.Fatal(err)
	}
	if cash != 4887290014 {
		t.Fatalf("seed sample cash_cents = %d, want 4887290014", cash)
	}
}
