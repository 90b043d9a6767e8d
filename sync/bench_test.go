package sync_test

// Benchmarks of the pieces a sync run spends its time in. They run only with
// -bench (go test -run '^$' -bench . ./sync/); the end-to-end figures (the
// real binary, peak memory, the curl/jq/sqlite3 baseline) come from bench/run.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// benchHTTP is the policy cmd/syncer wires: one keep-alive pool, at most
// concurrency connections per host, no rate limit.
func benchHTTP(concurrency int) *provider.HTTP {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        4 * concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	return &provider.HTTP{Client: &http.Client{Transport: tr}, Timeout: 30 * time.Second}
}

func startSandbox(b *testing.B, latency time.Duration) *sandbox.Sandbox {
	b.Helper()
	sb, err := sandbox.Start(sandbox.Options{Latency: latency})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sb.Close)
	return sb
}

func estateGuruClient(sb *sandbox.Sandbox, h *provider.HTTP) *estateguru.Client {
	return &estateguru.Client{
		BaseURL:      sb.EstateGuruURL,
		ClientID:     sandbox.DefaultEstateGuruClientID,
		ClientSecret: sandbox.DefaultEstateGuruClientSecret,
		HTTP:         h,
	}
}

func everRealClient(sb *sandbox.Sandbox, h *provider.HTTP) *everreal.Client {
	return &everreal.Client{
		BaseURL:      sb.EverRealURL,
		ClientID:     sandbox.DefaultEverRealClientID,
		ClientSecret: sandbox.DefaultEverRealClientSecret,
		HTTP:         h,
	}
}

// portfolio fetches a generated investor's portfolio of n investments
// through the real client, raw answer included.
func portfolio(b *testing.B, n int) *estateguru.Portfolio {
	b.Helper()
	ctx := context.Background()
	sb := startSandbox(b, 0)
	sb.AddEstateGuruInvestor(sandbox.GenerateInvestor("investor", n, 1))
	c := estateGuruClient(sb, benchHTTP(1))
	tok, err := c.Refresh(ctx, provider.Secret(sb.IssueEstateGuruRefreshToken("investor")))
	if err != nil {
		b.Fatal(err)
	}
	p, err := c.Investments(ctx, tok.Access)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkSaveEstateGuru measures the store's snapshot write: one
// transaction per snapshot, investments inserted in batches. Each iteration
// writes a new period, so the history grows as it does in production.
func BenchmarkSaveEstateGuru(b *testing.B) {
	for _, n := range []int{50, 10_000, 100_000} {
		b.Run(fmt.Sprintf("investments=%d", n), func(b *testing.B) {
			ctx := context.Background()
			p := portfolio(b, n)
			var list []store.Investment
			for _, inv := range p.Investments {
				list = append(list, store.Investment(inv))
			}
			snap := store.EstateGuruSnapshot{Currency: p.Currency, CashCents: p.CashCents, Raw: p.Raw, Investments: store.InvestmentsOf(list)}
			st, err := store.Open(ctx, b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			c, err := st.Connect(ctx, "investor", estateguru.Name, "http://127.0.0.1", provider.Token{Refresh: "r"})
			if err != nil {
				b.Fatal(err)
			}
			day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				at := day.Add(time.Duration(i) * 24 * time.Hour)
				if err := st.SaveEstateGuru(ctx, c.ID, at, at, snap); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkFirstSnapshot measures the write of a connection's first
// snapshot of 100,000 investments into a fresh store (the write path of
// bench/run, without the process, the fetch and the decoding), in parts:
// whole; without the raw answer; and for a second connection, whose first
// snapshot finds the position table (estateguru_position, grown once per
// database to the largest portfolio) already long enough.
func BenchmarkFirstSnapshot(b *testing.B) {
	ctx := context.Background()
	p := portfolio(b, 100_000)
	var list []store.Investment
	for _, inv := range p.Investments {
		list = append(list, store.Investment(inv))
	}
	for _, v := range []struct {
		name          string
		raw, posReady bool
	}{{"whole", true, false}, {"without-raw", false, false}, {"positions-ready", true, true}, {"positions-ready-without-raw", false, true}} {
		b.Run(v.name, func(b *testing.B) {
			snap := store.EstateGuruSnapshot{Currency: p.Currency, CashCents: p.CashCents, Investments: store.InvestmentsOf(list)}
			if v.raw {
				snap.Raw = p.Raw
			}
			day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				st, err := store.Open(ctx, b.TempDir(), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if v.posReady {
					first, err := st.Connect(ctx, "first", estateguru.Name, "http://127.0.0.1", provider.Token{Refresh: "r"})
					if err != nil {
						b.Fatal(err)
					}
					if err := st.SaveEstateGuru(ctx, first.ID, day, day, snap); err != nil {
						b.Fatal(err)
					}
				}
				c, err := st.Connect(ctx, "investor", estateguru.Name, "http://127.0.0.1", provider.Token{Refresh: "r"})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := st.SaveEstateGuru(ctx, c.ID, day, day, snap); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkInvestments measures fetching and decoding a portfolio from the
// sandbox (no added latency): transfer and exact decoding of every amount.
func BenchmarkInvestments(b *testing.B) {
	for _, n := range []int{50, 100_000} {
		b.Run(fmt.Sprintf("investments=%d", n), func(b *testing.B) {
			ctx := context.Background()
			sb := startSandbox(b, 0)
			sb.AddEstateGuruInvestor(sandbox.GenerateInvestor("investor", n, 1))
			c := estateGuruClient(sb, benchHTTP(1))
			tok, err := c.Refresh(ctx, provider.Secret(sb.IssueEstateGuruRefreshToken("investor")))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, err := c.Investments(ctx, tok.Access)
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Investments) != n {
					b.Fatalf("got %d investments, want %d", len(p.Investments), n)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkRun measures whole runs in process: 200 connections (half each
// provider, 50 investments per investor), every one refreshing then fetching
// (the refresh margin makes every access token count as expiring), against
// the sandbox with no added latency, so what is left is syncer's own cost per
// connection: locks, vault writes, decoding, snapshot writes, run records.
func BenchmarkRun(b *testing.B) {
	const conns, investments, concurrency = 200, 50, 16
	ctx := context.Background()
	sb := startSandbox(b, 0)
	st, err := store.Open(ctx, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range conns / 2 {
		name := fmt.Sprintf("estateguru-%04d", i)
		sb.AddEstateGuruInvestor(sandbox.GenerateInvestor(name, investments, int64(i)))
		tok := provider.Token{Refresh: provider.Secret(sb.IssueEstateGuruRefreshToken(name))}
		if _, err := st.Connect(ctx, name, estateguru.Name, sb.EstateGuruURL, tok); err != nil {
			b.Fatal(err)
		}
		email := fmt.Sprintf("everreal-%04d@example.com", i)
		sb.AddEverRealUser(sandbox.GenerateEverRealUser(email, int64(i)))
		tok = provider.Token{Refresh: provider.Secret(sb.IssueEverRealRefreshToken(email))}
		if _, err := st.Connect(ctx, fmt.Sprintf("everreal-%04d", i), everreal.Name, sb.EverRealURL, tok); err != nil {
			b.Fatal(err)
		}
	}
	h := benchHTTP(concurrency)
	s := &sync.Syncer{
		Store: st,
		Providers: sync.Providers{
			everreal.Name:   func(string) sync.Provider { return sync.EverReal{Client: everRealClient(sb, h)} },
			estateguru.Name: func(string) sync.Provider { return sync.EstateGuru{Client: estateGuruClient(sb, h)} },
		},
		Concurrency:   concurrency,
		RefreshMargin: 365 * 24 * time.Hour,
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sum, err := s.Run(ctx, sync.TriggerOnce, nil)
		if err != nil {
			b.Fatal(err)
		}
		if sum.OK != conns {
			b.Fatalf("run %d: %d ok, %d failed", sum.RunID, sum.OK, sum.Failed)
		}
	}
	b.ReportMetric(float64(conns*b.N)/b.Elapsed().Seconds(), "connections/s")
}
