package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSaveEstateGuruStoresEveryRowExactly covers the batched insert (64 rows
// a statement, through the driver's own statement) and the raw answer bound
// as bytes: whatever the count, every investment comes back in order with
// every column as given, and raw is the answer's exact text.
func TestSaveEstateGuruStoresEveryRowExactly(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	for _, n := range []int{0, 1, 63, 64, 65, 200, 129} { // the last replaces 200 in the same period
		var list []Investment
		for i := range n {
			inv := Investment{
				LoanID: fmt.Sprintf("EE%d", i), Name: fmt.Sprintf("loan %d 'quoted' – Ü", i), Quantity: int64(i % 7),
				InvestmentAmountCents: int64(i) * 101, MarketValueCents: -int64(i), PrincipalLeftCents: 1_000_000_000_01,
				ProfitCents: int64(i) * 3, RealizedIncomeCents: 29, ChangeCents: -int64(i) * 5,
				ResourcePath: fmt.Sprintf("https://estateguru.co/portal/investment/single/EE%d", i),
			}
			if i == 5 {
				inv.LoanID, inv.Name = "", "" // stored as NULL, as before
			}
			list = append(list, inv)
		}
		snap := EstateGuruSnapshot{Currency: "EUR", CashCents: int64(n), Investments: InvestmentsOf(list),
			Raw: []byte(fmt.Sprintf(`{"n":%d,"name":"Ülemiste \"City\" – 2"}`, n))}
		saveEG(t, s, id, day0, snap)

		rows, err := s.snapshots.Query(`SELECT position, coalesce(loan_id, '<null>'), coalesce(name, '<null>'), quantity,
			investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents,
			change_cents, resource_path FROM estateguru_investment WHERE connection_id = ? ORDER BY position`, id)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var pos int
			var got Investment
			if err := rows.Scan(&pos, &got.LoanID, &got.Name, &got.Quantity, &got.InvestmentAmountCents, &got.MarketValueCents,
				&got.PrincipalLeftCents, &got.ProfitCents, &got.RealizedIncomeCents, &got.ChangeCents, &got.ResourcePath); err != nil {
				t.Fatal(err)
			}
			want := list[i]
			if want.LoanID == "" {
				want.LoanID, want.Name = "<null>", "<null>"
			}
			if pos != i || got != want {
				t.Fatalf("n=%d: row %d = %d %+v, want %d %+v", n, i, pos, got, i, want)
			}
			i++
		}
		rows.Close()
		if i != n {
			t.Fatalf("n=%d: %d rows stored", n, i)
		}
		var raw, typ string
		var count, amount int64
		if err := s.snapshots.QueryRow(`SELECT raw, typeof(raw), investments, investment_amount_cents
			FROM estateguru_snapshot WHERE connection_id = ?`, id).Scan(&raw, &typ, &count, &amount); err != nil {
			t.Fatal(err)
		}
		if typ != "text" || raw != string(snap.Raw) {
			t.Fatalf("n=%d: raw is %s %q, want text %q", n, typ, raw, snap.Raw)
		}
		if want := int64(101 * n * (n - 1) / 2); count != int64(n) || amount != want {
			t.Fatalf("n=%d: totals = %d investments, %d cents; want %d, %d", n, count, amount, n, want)
		}
	}
}

func TestSaveEstateGuruNilRawIsEmptyText(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	if err := s.SaveEstateGuru(context.Background(), id, day0, day0, EstateGuruSnapshot{Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	var raw, typ string
	if err := s.snapshots.QueryRow("SELECT raw, typeof(raw) FROM estateguru_snapshot").Scan(&raw, &typ); err != nil {
		t.Fatal(err)
	}
	if raw != "" || typ != "text" {
		t.Fatalf("raw = %s %q, want empty text", typ, raw)
	}
}

// A sequence that fails part way through (the answer turned out malformed
// while it was being decoded) stores nothing: the period's earlier snapshot
// stays whole, and the error is the sequence's own.
func TestSaveEstateGuruKeepsTheOldSnapshotWhenTheSequenceFails(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(700, 300))
	boom := errors.New("the answer went bad at line 200")
	failing := func(yield func(Investment, error) bool) {
		for i, inv := range investments(500) {
			if i == 200 {
				yield(Investment{}, boom)
				return
			}
			if !yield(inv, nil) {
				return
			}
		}
	}
	err := s.SaveEstateGuru(context.Background(), id, day0, day0.Add(2*time.Hour), EstateGuruSnapshot{Currency: "EUR", CashCents: 1, Investments: failing, Raw: []byte(`{}`)})
	if err != boom {
		t.Fatalf("SaveEstateGuru = %v, want the sequence's own error", err)
	}
	if got, want := dump(t, s.snapshots.DB, "SELECT cash_cents, investments, (SELECT count(*) FROM estateguru_investment) FROM estateguru_snapshot"), "700|300|300|\n"; got != want {
		t.Fatalf("after the failed save: %q, want %q (the earlier snapshot whole)", got, want)
	}
	// The deferred foreign keys were switched off again with the rollback:
	// a row without its snapshot is refused at once.
	if _, err := s.snapshots.Exec(`INSERT INTO estateguru_investment (connection_id, snapshot_at, position, quantity,
		investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents, change_cents)
		VALUES (?, '1999-01-01T00:00:00Z', 0, 0, 0, 0, 0, 0, 0, 0)`, id); err == nil {
		t.Fatal("an orphan investment row was accepted")
	}
}

// Totals that would pass what 64-bit cents hold refuse the answer: nothing
// is stored, the period's earlier snapshot stays, and the error says why,
// instead of a negative total in every view.
func TestTotalsPastInt64RefuseTheAnswer(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(700, 3))
	huge := investments(2)
	for i := range huge {
		huge[i].MarketValueCents = 5_000_000_000_000_000_000 // 50,000,000,000,000,000.00
	}
	err := s.SaveEstateGuru(context.Background(), id, day0, day0.Add(2*time.Hour), snapshotOf(1, huge))
	if err == nil || !strings.Contains(err.Error(), "market_value amounts add up") {
		t.Fatalf("SaveEstateGuru = %v, want the totals refused", err)
	}
	if got, want := dump(t, s.snapshots.DB, "SELECT cash_cents, investments, market_value_cents FROM estateguru_snapshot"), "700|3|300|\n"; got != want {
		t.Fatalf("after the refused save: %q, want %q (the earlier snapshot whole)", got, want)
	}
}
