package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// model is what the views must answer: per connection and period, the
// investments in order and the raw answer.
type model map[int64]map[string]modelSnap

type modelSnap struct {
	list []Investment
	raw  string
}

// rawOf is a raw answer shaped like EstateGuru's: one object per
// investment, so its pieces follow the investments.
func rawOf(list []Investment, extra string) string {
	var b strings.Builder
	b.WriteString(`{"cash":"1.00","extra":"` + extra + `","investments":[`)
	for i, inv := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"loan":%q,"name":%q,"market_value":"%d","profit":"%d","resourcePath":"https://estateguru.co/portal/investment/single/%s"}`,
			inv.LoanID, inv.Name, inv.MarketValueCents, inv.ProfitCents, inv.LoanID)
	}
	b.WriteString(`]}`)
	return b.String()
}

// checkModel compares every EstateGuru view row of the store with the model.
func checkModel(t *testing.T, s *Store, m model, when string) {
	t.Helper()
	for connID, snaps := range m {
		var periods []string
		for at := range snaps {
			periods = append(periods, at)
		}
		slices.Sort(periods)
		rows, err := s.snapshots.Query(`SELECT snapshot_at, position, coalesce(loan_id, ''), coalesce(name, ''), quantity,
			investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents,
			change_cents, coalesce(resource_path, '') FROM estateguru_investments WHERE connection_id = ? ORDER BY snapshot_at, position`, connID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var at string
			var pos int
			var inv Investment
			if err := rows.Scan(&at, &pos, &inv.LoanID, &inv.Name, &inv.Quantity, &inv.InvestmentAmountCents, &inv.MarketValueCents,
				&inv.PrincipalLeftCents, &inv.ProfitCents, &inv.RealizedIncomeCents, &inv.ChangeCents, &inv.ResourcePath); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s %d %+v", at, pos, inv))
		}
		rows.Close()
		var want []string
		for _, at := range periods {
			for i, inv := range snaps[at].list {
				want = append(want, fmt.Sprintf("%s %d %+v", at, i, inv))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: connection %d: estateguru_investments has %d rows, want %d; first difference:\n%s", when, connID, len(got), len(want), firstDiff(got, want))
		}
		rows, err = s.snapshots.Query("SELECT snapshot_at, raw, typeof(raw) FROM estateguru_portfolios WHERE connection_id = ? ORDER BY snapshot_at", connID)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var at, raw, typ string
			if err := rows.Scan(&at, &raw, &typ); err != nil {
				t.Fatal(err)
			}
			if i >= len(periods) || at != periods[i] || raw != snaps[at].raw || typ != "text" {
				t.Fatalf("%s: connection %d: portfolio %d is %s (%s, %d bytes), want %v", when, connID, i, at, typ, len(raw), periods)
			}
			i++
		}
		rows.Close()
		if i != len(periods) {
			t.Fatalf("%s: connection %d: %d portfolios, want %d", when, connID, i, len(periods))
		}
		var newest string
		if len(periods) > 0 {
			newest = periods[len(periods)-1]
		}
		if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM latest_estateguru_investments WHERE connection_id = ?", connID), len(snaps[newest].list); got != want {
			t.Fatalf("%s: connection %d: latest has %d investments, want %d", when, connID, got, want)
		}
	}
	// No piece of a raw answer outlives the snapshots naming it.
	if got := count(t, s.snapshots.DB, `SELECT count(*) FROM estateguru_raw_chunk ch WHERE refs <> (SELECT count(*) FROM estateguru_snapshot s
		WHERE ch.id IN (SELECT value FROM json_each(s.raw_chunks)))`); got != 0 {
		t.Fatalf("%s: %d raw pieces with a wrong reference count", when, got)
	}
}

func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return "got  " + g + "\nwant " + w
		}
	}
	return ""
}

// Whatever order snapshots are written, replaced and deleted in, the views
// answer exactly what was written, raw answers byte for byte.
func TestHistoryAnswersWhatWasWrittenInAnyOrder(t *testing.T) {
	s := openStore(t, t.TempDir())
	rng := rand.New(rand.NewPCG(1, 2))
	m := model{}
	var ids []int64
	for c := range 3 {
		id := connect(t, s, fmt.Sprintf("eg%d", c), "estateguru")
		ids = append(ids, id)
		m[id] = map[string]modelSnap{}
	}
	lists := map[int64][]Investment{}
	for step := range 300 {
		id := ids[rng.IntN(len(ids))]
		list := slices.Clone(lists[id])
		switch r := rng.IntN(10); {
		case r < 6 || len(list) == 0: // values change
			if len(list) == 0 {
				list = investments(5 + rng.IntN(20))
			}
			for range 1 + rng.IntN(3) {
				list[rng.IntN(len(list))].MarketValueCents += int64(1 + rng.IntN(9))
			}
		case r < 8: // one appears somewhere
			k := rng.IntN(len(list) + 1)
			list = slices.Insert(list, k, Investment{LoanID: fmt.Sprintf("N%d", step), Name: "new", Quantity: 1, InvestmentAmountCents: 5})
		default: // one goes
			k := rng.IntN(len(list))
			list = slices.Delete(list, k, k+1)
		}
		lists[id] = list
		day := rng.IntN(40)
		if rng.IntN(3) > 0 { // mostly the newest period or the one after
			day = 0
			for at := range m[id] {
				t, _ := time.Parse(TimeFormat, at)
				day = max(day, int(t.Sub(day0).Hours()/24)+rng.IntN(2))
			}
		}
		at := day0.Add(time.Duration(day) * 24 * time.Hour)
		raw := rawOf(list, fmt.Sprint(step%3))
		if rng.IntN(5) == 0 {
			raw = `{"small":true}` // stays whole
		}
		snap := EstateGuruSnapshot{Currency: "EUR", CashCents: 1, Raw: []byte(raw), Investments: InvestmentsOf(list)}
		saveEG(t, s, id, at, snap)
		m[id][at.Format(TimeFormat)] = modelSnap{list: list, raw: raw}
		switch rng.IntN(25) {
		case 0: // someone deletes a snapshot by hand
			var all []string
			for at := range m[id] {
				all = append(all, at)
			}
			slices.Sort(all)
			at := all[rng.IntN(len(all))]
			if _, err := s.snapshots.Exec("DELETE FROM estateguru_snapshot WHERE connection_id = ? AND snapshot_at = ?", id, at); err != nil {
				t.Fatal(err)
			}
			delete(m[id], at)
		case 1: // retention
			cutoff := day0.Add(time.Duration(rng.IntN(30)) * 24 * time.Hour)
			if _, err := s.Retain(context.Background(), cutoff); err != nil {
				t.Fatal(err)
			}
			for _, snaps := range m {
				newest := ""
				for at := range snaps {
					newest = max(newest, at)
				}
				for at := range snaps {
					if at < cutoff.Format(TimeFormat) && at != newest {
						delete(snaps, at)
					}
				}
			}
		}
		if step%10 == 9 {
			checkModel(t, s, m, fmt.Sprintf("step %d", step))
		}
	}
	checkModel(t, s, m, "end")
	// It kept only what changed: fewer rows than the views show.
	if stored, shown := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investment"),
		count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investments"); stored >= shown {
		t.Fatalf("%d rows stored for %d shown: nothing was compacted", stored, shown)
	}
}

// A database written by schema 4 (every snapshot whole) migrates in place:
// the views answer exactly what they answered before, the history keeps
// only what changed, and the log says how far it got.
func TestMigrateFromVersion4CompactsTheHistory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	schema4, err := os.ReadFile(filepath.Join("testdata", "schema4.sql"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SnapshotsFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	db, err := sql.Open("sqlite", DSN(path, []string{"journal_mode(WAL)", "foreign_keys(ON)"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(schema4)); err != nil {
		t.Fatal(err)
	}
	m := model{}
	rng := rand.New(rand.NewPCG(3, 4))
	for c := range 3 {
		id := int64(c + 1)
		if _, err := db.Exec(`INSERT INTO connection (id, name, provider, base_url, created_at, updated_at)
			VALUES (?, ?, 'estateguru', 'https://estateguru.co', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`, id, fmt.Sprintf("eg%d", c)); err != nil {
			t.Fatal(err)
		}
		m[id] = map[string]modelSnap{}
		list := investments(40)
		for d := range 12 {
			if d > 0 {
				for range 4 {
					list[rng.IntN(len(list))].ProfitCents += 3
				}
				if d == 6 {
					list = slices.Insert(list, 10, Investment{LoanID: "NEW", Name: "new", Quantity: 2})
				}
			}
			list := slices.Clone(list)
			at := day0.Add(time.Duration(d) * 24 * time.Hour).Format(TimeFormat)
			raw := rawOf(list, "")
			// As schema 4's SaveEstateGuru wrote it: every row, raw whole.
			var sum int64
			for _, inv := range list {
				sum += inv.InvestmentAmountCents
			}
			if _, err := db.Exec(`INSERT INTO estateguru_snapshot (connection_id, snapshot_at, fetched_at, currency, cash_cents, investments,
				investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents, raw)
				VALUES (?, ?, ?, 'EUR', 1, ?, ?, 0, 0, 0, 0, ?)`, id, at, at, len(list), sum, raw); err != nil {
				t.Fatal(err)
			}
			for i, inv := range list {
				if _, err := db.Exec(`INSERT INTO estateguru_investment (connection_id, snapshot_at, position, loan_id, name, quantity,
					investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents, change_cents, resource_path)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, at, i, inv.LoanID, inv.Name, inv.Quantity, inv.InvestmentAmountCents,
					inv.MarketValueCents, inv.PrincipalLeftCents, inv.ProfitCents, inv.RealizedIncomeCents, inv.ChangeCents, nil); err != nil {
					t.Fatal(err)
				}
			}
			m[id][at] = modelSnap{list: list, raw: raw}
		}
	}
	if _, err := db.Exec("PRAGMA user_version = 4"); err != nil {
		t.Fatal(err)
	}
	views := []string{
		"SELECT * FROM estateguru_investments ORDER BY connection, snapshot_at, position",
		"SELECT * FROM estateguru_portfolios ORDER BY connection, snapshot_at",
		"SELECT * FROM latest_estateguru_investments ORDER BY connection, position",
		"SELECT * FROM latest_estateguru_portfolios ORDER BY connection",
		"SELECT * FROM estateguru_investment_changes ORDER BY connection, change, loan_id",
		"SELECT * FROM estateguru_portfolio_history ORDER BY connection, snapshot_at",
	}
	before := map[string]string{}
	for _, q := range views {
		before[q] = dump(t, db, q)
	}
	rowsBefore := count(t, db, "SELECT count(*) FROM estateguru_investment")
	db.Close()

	var logged bytes.Buffer
	s, err := Open(context.Background(), dir, Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range views {
		if got := dump(t, s.snapshots.DB, q); got != before[q] {
			t.Fatalf("%s after the migration:\n%s\nbefore:\n%s", q, got, before[q])
		}
	}
	checkModel(t, s, m, "after the migration")
	if after := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investment"); after*3 > rowsBefore {
		t.Fatalf("%d investment rows after the migration, %d before: not compacted", after, rowsBefore)
	}
	if got := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_snapshot WHERE raw_chunks IS NULL"); got != 0 {
		t.Fatalf("%d raw answers left whole", got)
	}
	// The pieces are shared: far fewer stored than the answers name.
	if stored, named := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_raw_chunk"),
		count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_snapshot, json_each(raw_chunks)"); stored*3 > named {
		t.Fatalf("%d raw pieces stored for %d named: not shared", stored, named)
	}
	if got := count(t, s.snapshots.DB, "SELECT count(*) FROM store_pending"); got != 0 {
		t.Fatalf("store_pending still has %d tasks", got)
	}
	if !strings.Contains(logged.String(), "snapshots_done=36 snapshots=36") {
		t.Fatalf("no progress line in the log:\n%s", logged.String())
	}
	// And the history goes on from there.
	list := slices.Clone(m[1][day0.Add(11*24*time.Hour).Format(TimeFormat)].list)
	list[0].ProfitCents++
	at := day0.Add(12 * 24 * time.Hour)
	saveEG(t, s, 1, at, EstateGuruSnapshot{Currency: "EUR", CashCents: 1, Raw: []byte(rawOf(list, "")), Investments: InvestmentsOf(list)})
	m[1][at.Format(TimeFormat)] = modelSnap{list: list, raw: rawOf(list, "")}
	checkModel(t, s, m, "after a new snapshot")

	// Run again over what is already compacted (as after an interruption):
	// it changes nothing the views show.
	if _, err := s.snapshots.Exec("INSERT INTO store_pending (task) VALUES (?)", compactTask); err != nil {
		t.Fatal(err)
	}
	if err := s.compactHistory(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, m, "after compacting again")
}

// A long run of bytes that start no UTF-8 character (invalid UTF-8, which
// the decoder lets through in a string) is cut into pieces of about
// rawChunkMax like any other text, not into pieces of one byte (a 2 MiB
// answer took 40 s and two million rows), and the pieces still make the
// answer whole.
func TestInvalidUTF8IsCutIntoFullPieces(t *testing.T) {
	raw := append([]byte(`{"cash":"1","x":"`), bytes.Repeat([]byte{0x80}, 1<<20)...)
	raw = append(raw, `"}`...)
	pieces := chunkRaw(raw)
	if want := len(raw)/rawChunkMax + 2; len(pieces) > want {
		t.Fatalf("%d pieces for %d bytes, want at most %d", len(pieces), len(raw), want)
	}
	if !bytes.Equal(bytes.Join(pieces, nil), raw) {
		t.Fatal("the pieces do not make the answer")
	}
	// Valid text is still cut at a character's start.
	text := bytes.Repeat([]byte("é"), rawChunkMax)
	for i, p := range chunkRaw(text) {
		if !utf8.Valid(p) {
			t.Fatalf("piece %d of valid text cuts a character", i)
		}
	}
}
