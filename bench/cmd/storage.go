package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/syncerhq/syncer/bench/internal/fixture"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// storageCase measures how snapshots.db grows: -storage-portfolios
// portfolios of 1,000 investments synced over 30 daily periods, a tenth of
// each portfolio's investments changing every period. It runs syncer's own
// sync in this process with a clock that moves a day per run (the binary
// cannot be given one), against the sandbox without latency, and prints
// the database's size (after a WAL checkpoint) after 1, 10 and 30 periods,
// per investment per period on average and at the margin (periods 11 to
// 30).
func storageCase(ctx context.Context, c config, work string, step func(string, ...any)) ([]line, error) {
	const invs, periods, changing = 1000, 30, 10 // percent
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	n := c.storagePortfolios
	accounts := fixture.Populate(sb, fixture.Spec{EstateGuru: n, Investments: invs, Prefix: "storage-"})
	portfolios := make([]sandbox.Investor, n)
	for i := range portfolios {
		portfolios[i] = sandbox.GenerateInvestor(accounts[i].Login, invs, int64(i+1))
	}
	dir := filepath.Join(work, "storage")
	if err := fixture.Connect(ctx, sb, dir, accounts); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	base := time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC)
	day := 0
	s := &sync.Syncer{
		Store: st,
		Providers: sync.Providers{estateguru.Name: func(u string) sync.Provider {
			return sync.EstateGuru{Client: &estateguru.Client{BaseURL: u, ClientID: sandbox.DefaultEstateGuruClientID,
				ClientSecret: provider.Secret(sandbox.DefaultEstateGuruClientSecret), HTTP: &provider.HTTP{}}}
		}},
		Concurrency: 4,
		Now:         func() time.Time { return base.AddDate(0, 0, day) },
	}
	size := func() (int64, error) {
		if _, err := st.Checkpoint(ctx); err != nil {
			return 0, err
		}
		var total int64
		for _, f := range []string{"snapshots.db", "snapshots.db-wal"} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err == nil {
				total += fi.Size()
			}
		}
		return total, nil
	}
	sizes := map[int]int64{}
	step("storage: %d portfolios of %d investments, %d daily periods, %d%% changing each", n, invs, periods, changing)
	for p := 1; p <= periods; p++ {
		day = p - 1
		if p > 1 {
			for i := range portfolios {
				inv := portfolios[i].Investments
				// A different tenth each period.
				for j := (p * 7) % 10; j < len(inv); j += 100 / changing {
					cents := int64(p*1000 + j)
					inv[j].MarketValue = fmt.Sprintf("%d.%02d", cents/100, cents%100)
					inv[j].Change = fmt.Sprintf("%d.%02d", p, j%100)
				}
				sb.AddEstateGuruInvestor(portfolios[i])
			}
		}
		sum, err := s.Run(ctx, sync.TriggerOnce, nil)
		if err != nil {
			return nil, err
		}
		if sum.OK != n {
			return nil, fmt.Errorf("storage: period %d: %d of %d connections synced", p, sum.OK, n)
		}
		if p == 1 || p == 10 || p == periods {
			b, err := size()
			if err != nil {
				return nil, err
			}
			sizes[p] = b
		}
	}
	per := func(b int64, p int) float64 { return float64(b) / float64(n*invs*p) }
	margin := float64(sizes[periods]-sizes[10]) / float64(n*invs*(periods-10))
	return []line{
		section(fmt.Sprintf("storage: %d portfolios of %d investments, %d daily periods, %d%% of the investments changing each period (snapshots.db + WAL after a checkpoint)",
			n, invs, periods, changing)),
		{"after 1 period", fmt.Sprintf("%s, %.0f bytes/investment", mb(sizes[1]), per(sizes[1], 1)), ""},
		{"after 10 periods", fmt.Sprintf("%s, %.0f bytes/investment/period", mb(sizes[10]), per(sizes[10], 10)), ""},
		{"after 30 periods", fmt.Sprintf("%s, %.0f bytes/investment/period", mb(sizes[periods]), per(sizes[periods], periods)),
			target(n == 10, per(sizes[periods], periods) < 100, per(sizes[periods], periods) < 100, "< 100 bytes (issue 15; needs the storage design)")},
		{"at the margin (periods 11 to 30)", fmt.Sprintf("%.0f bytes/investment/period", margin), ""},
	}, nil
}
