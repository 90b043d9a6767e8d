package store

import (
	"strings"
	"testing"
)

// One connection's estateguru_portfolio_history reads that connection's
// snapshots only: the filter on connection (or connection_id) reaches
// inside the window (its PARTITION BY names both), so the plan seeks the
// connection and its snapshots instead of computing the whole history and
// filtering it afterwards.
func TestPortfolioHistoryOfOneConnectionSeeksIt(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 3, 10, 2)
	for _, q := range []string{
		"SELECT * FROM estateguru_portfolio_history WHERE connection = 'eg1'",
		"SELECT * FROM estateguru_portfolio_history WHERE connection_id = 1",
	} {
		for _, when := range []string{"no statistics", "after ANALYZE"} {
			if when == "after ANALYZE" {
				if _, err := s.snapshots.Exec("ANALYZE"); err != nil {
					t.Fatal(err)
				}
			}
			plan := queryPlan(t, s.snapshots.DB, q)
			joined := strings.Join(plan, "\n")
			for _, line := range plan {
				if strings.HasPrefix(line, "SCAN s") || strings.HasPrefix(line, "SCAN c") || strings.HasPrefix(line, "SCAN estateguru_snapshot") {
					t.Fatalf("%s (%s): plan walks a whole table %q:\n%s", q, when, line, joined)
				}
			}
			if !strings.Contains(joined, "connection_id=?") {
				t.Fatalf("%s (%s): plan does not seek the connection's snapshots:\n%s", q, when, joined)
			}
		}
	}
}

// estateguru_investments resolves each position of a snapshot with index
// seeks (schema 5): filtered to one snapshot, or to one connection, it
// never walks every stored investment row.
func TestInvestmentsViewSeeksEachPosition(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 3, 10, 20)
	for _, q := range []string{
		"SELECT * FROM estateguru_investments WHERE connection = 'eg1' AND snapshot_at = '" + day0.Format(TimeFormat) + "'",
		"SELECT * FROM estateguru_investments WHERE connection_id = 1",
	} {
		for _, when := range []string{"no statistics", "after ANALYZE"} {
			if when == "after ANALYZE" {
				if _, err := s.snapshots.Exec("ANALYZE"); err != nil {
					t.Fatal(err)
				}
			}
			plan := queryPlan(t, s.snapshots.DB, q)
			joined := strings.Join(plan, "\n")
			for _, line := range plan {
				if strings.HasPrefix(line, "SCAN i") || strings.HasPrefix(line, "SCAN m") || strings.HasPrefix(line, "SCAN estateguru_investment") || strings.HasPrefix(line, "SCAN pos") {
					t.Fatalf("%s (%s): plan walks the investment rows %q:\n%s", q, when, line, joined)
				}
			}
			if !strings.Contains(joined, "SEARCH pos USING INTEGER PRIMARY KEY (rowid<?)") {
				t.Fatalf("%s (%s): plan does not seek the snapshot's positions:\n%s", q, when, joined)
			}
			if !strings.Contains(joined, "estateguru_investment_by_position (connection_id=? AND position=?") {
				t.Fatalf("%s (%s): plan does not seek by position:\n%s", q, when, joined)
			}
		}
	}
}
