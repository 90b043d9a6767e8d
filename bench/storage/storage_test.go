// Package storage holds the benchmarks of snapshots.db's size and of the
// reporting views over a long history (issue 15: "storage that grows with
// change, not with time" and "queries over long history stay fast"). They
// run only with -bench:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/storage/
//
// Both write through the store's API (the growth benchmark syncs from the
// sandbox through the real EstateGuru client, raw answer included), so they
// measure whatever layout the store has.
package storage

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"

	_ "modernc.org/sqlite"
)

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchmarkStorageGrowth: one EstateGuru connection of 1,000 investments,
// synced from the sandbox once a period for 30 periods; before each period
// 10% of the investments, picked at random, change value (market value,
// profit, change). It reports snapshots.db's size (after a checkpoint, so
// the WAL is in the file) after 1, 10 and 30 periods, and the bytes per
// investment per period, whose target is under 100.
func BenchmarkStorageGrowth(b *testing.B) {
	const investments, periods, changing = 1000, 30, 0.10
	for i := 0; i < b.N; i++ {
		sizes := growth(b, investments, periods, changing)
		for _, p := range []int{1, 2, 10, 30} {
			b.Logf("after %2d periods: %9d bytes, %6.1f bytes/investment/period", p, sizes[p],
				float64(sizes[p])/float64(investments*p))
		}
		b.ReportMetric(float64(sizes[1]), "bytes@1")
		b.ReportMetric(float64(sizes[10]), "bytes@10")
		b.ReportMetric(float64(sizes[30]), "bytes@30")
		b.ReportMetric(float64(sizes[periods])/float64(investments*periods), "bytes/investment/period")
	}
}

// growth runs the syncs and returns the database size after each period.
func growth(b *testing.B, n, periods int, changing float64) map[int]int64 {
	b.Helper()
	ctx := context.Background()
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	inv := sandbox.GenerateInvestor("investor", n, 1)
	sb.AddEstateGuruInvestor(inv)
	c := &estateguru.Client{BaseURL: sb.EstateGuruURL, ClientID: sandbox.DefaultEstateGuruClientID,
		ClientSecret: sandbox.DefaultEstateGuruClientSecret,
		HTTP:         &provider.HTTP{Client: &http.Client{}, Timeout: 30 * time.Second}}
	tok, err := c.Refresh(ctx, provider.Secret(sb.IssueEstateGuruRefreshToken("investor")))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	conn, err := st.Connect(ctx, "investor", estateguru.Name, sb.EstateGuruURL, provider.Token{Refresh: "r"})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	sizes := map[int]int64{}
	for p := 1; p <= periods; p++ {
		if p > 1 {
			for _, k := range rng.Perm(n)[:int(float64(n)*changing)] {
				d := 1 + rng.Int64N(5000)
				in := &inv.Investments[k]
				in.MarketValue = addCents(b, in.MarketValue, d)
				in.Profit = addCents(b, in.Profit, d)
				in.Change = addCents(b, in.Change, d)
			}
			sb.AddEstateGuruInvestor(inv)
		}
		pf, err := c.Investments(ctx, tok.Access)
		if err != nil {
			b.Fatal(err)
		}
		list := make([]store.Investment, len(pf.Investments))
		for i, in := range pf.Investments {
			list[i] = store.Investment(in)
		}
		at := day0.Add(time.Duration(p-1) * 24 * time.Hour)
		snap := store.EstateGuruSnapshot{Currency: pf.Currency, CashCents: pf.CashCents, Raw: pf.Raw,
			Investments: store.InvestmentsOf(list)}
		if err := st.SaveEstateGuru(ctx, conn.ID, at, at.Add(time.Hour), snap); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, store.SnapshotsFile))
		if err != nil {
			b.Fatal(err)
		}
		sizes[p] = fi.Size()
	}
	if os.Getenv("SYNCER_BENCH_DBSTAT") != "" {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.SnapshotsFile)+"?mode=ro")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query("SELECT name, sum(pgsize), sum(unused), count(*) FROM dbstat GROUP BY name ORDER BY 2 DESC")
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var name string
			var size, unused, pages int64
			rows.Scan(&name, &size, &unused, &pages)
			b.Logf("%-40s %9d bytes %9d unused %5d pages", name, size, unused, pages)
		}
		rows.Close()
		var free int64
		db.QueryRow("PRAGMA freelist_count").Scan(&free)
		b.Logf("free pages %d", free)
	}
	return sizes
}

// addCents adds d cents to a decimal string such as "-12.34".
func addCents(b *testing.B, s string, d int64) string {
	b.Helper()
	c, err := strconv.ParseInt(strings.Replace(s, ".", "", 1), 10, 64)
	if err != nil {
		b.Fatalf("%q: %v", s, err)
	}
	c += d
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// Long history: 365 daily periods of 100 EstateGuru portfolios of 50
// investments (and 100 EverReal users), written through the store.
const (
	historyDays        = 365
	historyPortfolios  = 100
	historyInvestments = 50
)

// BenchmarkLongHistory times the reporting queries over a year of history:
// every latest_* view read whole (target: under 20 ms each) and one
// connection's estateguru_portfolio_history (target: under 50 ms).
func BenchmarkLongHistory(b *testing.B) {
	dir := longHistory(b)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.SnapshotsFile)+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	queries := []struct{ name, sql string }{
		{"latest_everreal_users", "SELECT * FROM latest_everreal_users"},
		{"latest_everreal_companies", "SELECT * FROM latest_everreal_companies"},
		{"latest_estateguru_portfolios", "SELECT * FROM latest_estateguru_portfolios"},
		{"latest_estateguru_investments", "SELECT * FROM latest_estateguru_investments"},
		{"estateguru_portfolio_history/one_connection",
			"SELECT * FROM estateguru_portfolio_history WHERE connection = 'eg042' ORDER BY snapshot_at"},
		// No target: a year of one connection's investments (18,250 rows),
		// to show what expanding the compacted history costs.
		{"estateguru_investments/one_connection_year",
			"SELECT * FROM estateguru_investments WHERE connection = 'eg042'"},
		{"estateguru_investment_changes", "SELECT * FROM estateguru_investment_changes"},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				rows, err := db.Query(q.sql)
				if err != nil {
					b.Fatal(err)
				}
				cols, _ := rows.Columns()
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				n := 0
				for rows.Next() {
					if err := rows.Scan(ptrs...); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				rows.Close()
				if n == 0 && q.name != "estateguru_investment_changes" {
					b.Fatalf("%s: no rows", q.sql)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
		})
	}
}

// longHistory writes the year of history once per process (it takes a
// while) into a directory kept until the process ends.
func longHistory(b *testing.B) string {
	b.Helper()
	if historyDir != "" {
		return historyDir
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "syncer-long-history-")
	if err != nil {
		b.Fatal(err)
	}
	dir = filepath.Join(dir, "data")
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	var eg, er []int64
	for c := 0; c < historyPortfolios; c++ {
		x, err := st.Connect(ctx, fmt.Sprintf("eg%03d", c), estateguru.Name, "https://eg.example", provider.Token{Refresh: "r"})
		if err != nil {
			b.Fatal(err)
		}
		eg = append(eg, x.ID)
		y, err := st.Connect(ctx, fmt.Sprintf("er%03d", c), everreal.Name, "https://er.example", provider.Token{Refresh: "r"})
		if err != nil {
			b.Fatal(err)
		}
		er = append(er, y.ID)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	list := make([]store.Investment, historyInvestments)
	for i := range list {
		list[i] = store.Investment{LoanID: fmt.Sprintf("EE%05d", i), Name: fmt.Sprintf("#%d Business loan (Estonia)", i),
			Quantity: 1, InvestmentAmountCents: 100_00, MarketValueCents: 100_00, PrincipalLeftCents: 100_00,
			ResourcePath: fmt.Sprintf("https://estateguru.co/portal/investment/single/EE%05d", i)}
	}
	for d := 0; d < historyDays; d++ {
		at := day0.Add(time.Duration(d) * 24 * time.Hour)
		for c := range eg {
			for k := 0; k < historyInvestments/10; k++ {
				in := &list[rng.IntN(len(list))]
				in.MarketValueCents += rng.Int64N(200) - 100
				in.ProfitCents += 7
			}
			raw := []byte(fmt.Sprintf(`{"cash":"%d.00","investments":%d}`, d, historyInvestments))
			snap := store.EstateGuruSnapshot{Currency: "EUR", CashCents: int64(d*100 + c), Raw: raw,
				Investments: store.InvestmentsOf(list)}
			if err := st.SaveEstateGuru(ctx, eg[c], at, at.Add(time.Hour), snap); err != nil {
				b.Fatal(err)
			}
			u := store.EverRealSnapshot{UserID: fmt.Sprint(c), Email: fmt.Sprintf("u%d@example.com", c), CompanyID: "c1",
				Scopes: []string{"offline_access", "company_user"}, Raw: []byte(`{}`),
				Companies: []store.Company{{ID: "c1", Name: "Acme", IsDefault: true}, {ID: "c2", Name: "Other"}}}
			if err := st.SaveEverReal(ctx, er[c], at, at.Add(time.Hour), u); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := st.Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("long history: %d days x %d portfolios x %d investments written in %v", historyDays, historyPortfolios,
		historyInvestments, time.Since(start).Round(time.Second))
	historyDir = dir
	return dir
}

// historyDir is the long history written once per benchmark process;
// TestMain removes it.
var historyDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if historyDir != "" {
		os.RemoveAll(filepath.Dir(historyDir))
	}
	os.Exit(code)
}
