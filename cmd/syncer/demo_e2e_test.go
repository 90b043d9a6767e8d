package main

import (
	"context"
	"os"
	"os/exec"
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
	var hints []string
	for i := 0; i < 2; i++ {
		res := w.mustRun(0, "", "demo", "-dir", dir)
		if !strings.Contains(res.stdout, "latest_estateguru_portfolios") || !strings.Contains(res.stdout, "4887290014") {
			t.Fatalf("the demo should show the stored portfolios and what to try:\n%s", res)
		}
		hints = nil
		for _, l := range strings.Split(res.stdout, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "SYNCER_DATA_DIR=") {
				hints = append(hints, l)
			}
		}
	}
	// The hints run as printed (here with the binary's own path: it is not
	// on PATH).
	if len(hints) < 3 {
		t.Fatalf("the demo printed %d hints to try", len(hints))
	}
	for _, h := range hints {
		cmd := exec.Command("bash", "-c", h)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		out, err := cmd.CombinedOutput()
		if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); err != nil || lines < 1 {
			t.Fatalf("hint %q should print a header and rows: %v\n%s", h, err, out)
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
	// Two of each, over demoPeriods periods; the second demo replaced the
	// first's snapshots instead of adding.
	if want := 2 * demoPeriods; portfolios != want || users != want || runs != want {
		t.Fatalf("portfolios = %d, users = %d, ok demo runs = %d; want %d each", portfolios, users, runs, want)
	}
	var appeared, disappeared, history int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM estateguru_investment_changes WHERE change = 'appeared'),
		(SELECT count(*) FROM estateguru_investment_changes WHERE change = 'disappeared'),
		(SELECT count(*) FROM estateguru_portfolio_history WHERE value_change_cents IS NOT NULL)`).Scan(&appeared, &disappeared, &history); err != nil {
		t.Fatal(err)
	}
	if appeared == 0 || disappeared == 0 || history == 0 {
		t.Fatalf("history views: %d appeared, %d disappeared, %d changes; want some of each", appeared, disappeared, history)
	}
	var cash int64
	if err := db.QueryRow(`SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'estateguru-seed'`).Scan(&cash); err != nil {
		t.Fatal(err)
	}
	if cash != 4887290014 {
		t.Fatalf("seed sample cash_cents = %d, want 4887290014", cash)
	}
}
