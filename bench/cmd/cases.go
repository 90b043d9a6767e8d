package main

// The second round's cases (performance issue 15): default settings
// against a rate-limit-enforcing sandbox, the scaling table, and the write
// path against sqlite3's own .import.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/syncerhq/syncer/bench/internal/fixture"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/sandbox"
)

// defaultConcurrency is SYNCER_CONCURRENCY's default (cmd/syncer/config.go).
const defaultConcurrency = 8

// requestsPerConnection: every fixture connection costs a refresh and a
// data call.
const requestsPerConnection = 2

// withoutVars drops the named variables from env.
func withoutVars(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				return true
			}
		}
		return false
	})
}

// defaultsCase is 1,000 connections (500 EverReal over 10 tenant hosts,
// 500 EstateGuru) with syncer's default settings (SYNCER_CONCURRENCY,
// SYNCER_RATE_LIMIT and SYNCER_PACING unset) against a sandbox that
// enforces EverReal's 300 requests a minute per host, as EverReal does.
func defaultsCase(ctx context.Context, c config, work string, step func(string, ...any)) ([]line, error) {
	const hosts = 10
	perMinute := c.defaultsLimit
	if perMinute <= 0 {
		perMinute = sandbox.EverRealRateLimitPerMinute
	}
	sb, err := sandbox.Start(sandbox.Options{Latency: c.latency, RateLimit: perMinute, EverRealHosts: hosts})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	n := c.defaultsConns
	half := n / 2
	spec := fixture.Spec{EverReal: n - half, EstateGuru: half, Investments: c.investments, EverRealHosts: hosts}
	step("defaults: creating %d accounts (EverReal over %d tenant hosts)", n, hosts)
	accounts := fixture.Populate(sb, spec)
	rows := half * c.investments
	var starts []time.Time // each run's start: the sandbox's windows are calendar minutes
	ms, _, err := runSyncerWith(ctx, c, sb, work, "defaults", accounts, half, rows, step, runOptions{
		env: func(dir string) []string {
			env := withoutVars(fixture.Env(sb, dir, defaultConcurrency), "SYNCER_CONCURRENCY", "SYNCER_RATE_LIMIT", "SYNCER_PACING")
			return append(env, strings.Fields(c.defaultsEnv)...)
		},
		// Each run starts with every host's budget whole, as an hourly
		// run does; runs seconds apart would otherwise share a minute.
		before: func() {
			sb.ResetRateLimits()
			starts = append(starts, time.Now())
		},
	})
	if err != nil {
		return nil, err
	}

	// The provider-allowed minimum: the network's (every request at the
	// sandbox's latency, SYNCER_CONCURRENCY at a time) or the busiest
	// EverReal host's, whichever is longer. The sandbox's windows are
	// calendar minutes: a host needing k windows can finish no sooner than
	// the start of its k-th, the first being what is left of the minute
	// the run started in. EstateGuru documents no limit and the sandbox
	// enforces none.
	requests := requestsPerConnection * n
	network := time.Duration(requests) * c.latency / defaultConcurrency
	perHost := map[string]int{}
	for _, a := range accounts {
		if a.Provider == "everreal" {
			perHost[a.BaseURL] += requestsPerConnection
		}
	}
	windows := 1
	for _, r := range perHost {
		windows = max(windows, (r+perMinute-1)/perMinute)
	}
	boundAt := func(start time.Time) time.Duration {
		if windows < 2 {
			return 0
		}
		return start.Truncate(time.Minute).Add(time.Duration(windows-1) * time.Minute).Sub(start)
	}
	minimums := make([]time.Duration, len(ms))
	for i := range ms {
		minimums[i] = max(network, boundAt(starts[i]))
	}
	ratios := make([]float64, len(ms))
	for i, m := range ms {
		ratios[i] = ratio(m.wall, minimums[i])
	}
	byWall := slices.Clone(ratios) // in the order spread sorts the runs
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(ms[a].wall - ms[b].wall) })
	for i, j := range order {
		byWall[i] = ratios[j]
	}
	ratioText := fmt.Sprintf("%.2fx", byWall[len(byWall)/2])
	if len(byWall) > 1 {
		ratioText += fmt.Sprintf(" [%.2fx..%.2fx]", slices.Min(ratios), slices.Max(ratios))
	}
	most429 := slices.Max(mapped(ms, func(m measured) int { return m.rateLimited }))
	maxPerHost := 0
	for _, r := range perHost {
		maxPerHost = max(maxPerHost, r)
	}
	applies := c.latency == 50*time.Millisecond && n == 1000 && c.investments == 50 && perMinute == sandbox.EverRealRateLimitPerMinute
	return []line{
		section(fmt.Sprintf("default settings: %d connections (%d EverReal over %d tenant hosts, %d EstateGuru with %d investments each), %s latency,\n"+
			"sandbox enforcing %d requests/min per EverReal host; SYNCER_CONCURRENCY, SYNCER_RATE_LIMIT, SYNCER_PACING unset (defaults)",
			n, spec.EverReal, hosts, half, c.investments, c.latency, perMinute) + extraNote(c.defaultsEnv)),
		{"wall time", spread(ms, func(m measured) string { return m.wall.Round(time.Millisecond).String() }), ""},
		{"requests (median run)", fmt.Sprint(median(ms).requests), ""},
		{"network minimum (2/conn x latency / 8)", network.Round(time.Millisecond).String(), ""},
		{"rate limit minimum (busiest host)", fmt.Sprintf("%d requests on it: %d window(s) of %d/min; median run's bound %s",
			maxPerHost, windows, perMinute, boundAt(starts[order[len(order)/2]]).Round(time.Millisecond)), ""},
		{"wall / provider-allowed minimum", ratioText,
			target(applies, slices.Min(ratios) <= 1.2, median1(ratios) <= 1.2, "<= 1.2x")},
		{"429 answers (most in a run)", fmt.Sprint(most429), target(applies, most429 == 0, most429 == 0, "0")},
		{"peak memory (max RSS)", mb(peak(ms)), ""},
	}, nil
}

// scaleCase is the scaling table: for each size, that many connections
// (half each provider) at -scale-concurrency with pacing off and no rate
// limit, wall time against the network ideal, and peak memory.
//
// The ideal divides the requests evenly over the slots, as if a request
// could be cut in parts. It cannot, and a connection's data call waits for
// its refresh, so no client finishes before whole rounds of one latency
// each: ceil(requests / concurrency) of them, and never fewer than a
// connection's own requests. That least possible wall time is printed too,
// without a target; at 100 connections on 64 slots it is 200 ms, 1.28x
// the ideal.
func scaleCase(ctx context.Context, c config, sb *sandbox.Sandbox, work string, step func(string, ...any)) ([]line, error) {
	conc := c.scaleConcurrency
	applies := c.latency == 50*time.Millisecond && conc == 64 && c.investments == 50
	out := []line{
		section(fmt.Sprintf("scaling: connections (half each provider, %d investments per EstateGuru one), SYNCER_CONCURRENCY=%d, %s latency,\n"+
			"SYNCER_PACING=off and SYNCER_RATE_LIMIT=0 (the sandbox enforces no limit); ideal = requests x latency / concurrency",
			c.investments, conc, c.latency)),
		{"connections: wall [range], ideal, least possible", "wall / ideal, wall / least possible, peak RSS, CPU syncer + sandbox", ""},
	}
	for _, n := range c.scaleSizes {
		half := n / 2
		spec := fixture.Spec{EverReal: n - half, EstateGuru: half, Investments: c.investments, Prefix: fmt.Sprintf("scale%d-", n)}
		step("scale: creating %d accounts", n)
		accounts := fixture.Populate(sb, spec)
		sc := c
		sc.concurrency = conc
		ms, _, err := runSyncerWith(ctx, sc, sb, work, fmt.Sprintf("scale-%d", n), accounts, half, half*c.investments, step, runOptions{
			env: func(dir string) []string {
				return fixture.Env(sb, dir, conc) // pacing off, no rate limit
			},
		})
		if err != nil {
			return nil, err
		}
		ideal := time.Duration(requestsPerConnection*n) * c.latency / time.Duration(conc)
		ratios := mapped(ms, func(m measured) float64 { return ratio(m.wall, ideal) })
		rounds := max((requestsPerConnection*n+conc-1)/conc, requestsPerConnection)
		least := time.Duration(rounds) * c.latency
		want, rssWant := 0.0, int64(0)
		switch n {
		case 100:
			want = 1.3
		case 10_000:
			want, rssWant = 1.1, 64<<20
		}
		verdict := ""
		if want > 0 {
			verdict = target(applies, slices.Min(ratios) <= want, median1(ratios) <= want, fmt.Sprintf("<= %.1fx", want))
		}
		if rssWant > 0 {
			v := target(applies, peak(ms) < rssWant, peak(ms) < rssWant, "RSS < 64 MB")
			if v != "" {
				verdict += "; " + v
			}
		}
		out = append(out, line{
			fmt.Sprintf("%d: %s, %s, %s", n, spread(ms, func(m measured) string { return m.wall.Round(time.Millisecond).String() }),
				ideal.Round(time.Millisecond), least.Round(time.Millisecond)),
			fmt.Sprintf("%.2fx, %.2fx, %s, %s + %s", median1(ratios), ratio(median(ms).wall, least), mb(peak(ms)),
				median(ms).cpu.Round(10*time.Millisecond), median(ms).sandboxCPU.Round(10*time.Millisecond)),
			verdict,
		})
	}
	return out, nil
}

// writePathCase compares syncer's write path with sqlite3's own .import of
// the same rows into the same table: one portfolio of -big investments,
// the sandbox without latency serving its prebuilt answer (encoded when
// the investor was added, so its own CPU barely counts). syncer's rate is
// rows over the whole `syncer -once` (start, refresh, fetch, decode,
// write); .import's is rows over the whole `sqlite3` command, into a fresh
// snapshots.db made by syncer's own schema and pragmas (WAL, 16 KiB pages),
// with synchronous=NORMAL as syncer sets it. sqlite3 does not check the
// foreign key (its shell leaves foreign_keys off), which flatters it.
//
// syncer stores more than those rows: the raw answer (in pieces, 2.7 times
// the rows' bytes here), the snapshot row naming the pieces, and the first
// portfolio this size also grows the position table. A second .import, of
// every row syncer stored in those four tables, shows how near syncer's
// write path comes to SQLite's own rate for the same work; it has no
// target.
func writePathCase(ctx context.Context, c config, work string, step func(string, ...any)) ([]line, error) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		return []line{section("write path: skipped, sqlite3 is not installed")}, nil
	}
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	n := c.big
	step("write path: creating an investor with %d investments", n)
	accounts := fixture.Populate(sb, fixture.Spec{EstateGuru: 1, Investments: n, Prefix: "write-"})
	// Each syncer run is followed at once by an .import run, so each pair
	// meets about the same load from whatever else the machine runs; the
	// ratio is the median of the pairs'.
	csvPath := filepath.Join(work, "write-rows.csv")
	one := c
	one.runs = 1
	var ms, imports, importsAll []measured
	var ratios, ratiosAll []float64
	var allImports []string // .import commands of everything syncer stored
	for i := range c.runs {
		m, dir, err := runSyncerWith(ctx, one, sb, work, fmt.Sprintf("write-%d", i+1), accounts, 1, n, step, runOptions{})
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if err := exportRows(ctx, filepath.Join(dir, "snapshots.db"), "estateguru_investment", csvPath); err != nil {
				return nil, err
			}
			// Positions first: the snapshot row's trigger then finds the
			// table long enough, as syncer's own write does.
			for _, table := range []string{"estateguru_position", "estateguru_raw_chunk", "estateguru_snapshot", "estateguru_investment"} {
				path := filepath.Join(work, "write-"+table+".csv")
				if table == "estateguru_investment" {
					path = csvPath
				} else if err := exportRows(ctx, filepath.Join(dir, "snapshots.db"), table, path); err != nil {
					return nil, err
				}
				allImports = append(allImports, ".import --csv "+path+" "+table)
			}
		}
		idir := filepath.Join(work, fmt.Sprintf("import-%d", i+1))
		if err := fixture.Connect(ctx, sb, idir, accounts); err != nil { // syncer's schema and pragmas, no rows
			return nil, err
		}
		step("write path: sqlite3 .import, run %d of %d", i+1, c.runs)
		im, err := measure(ctx, sb, "sqlite3", []string{"-cmd", "PRAGMA synchronous=NORMAL", filepath.Join(idir, "snapshots.db"),
			".import --csv " + csvPath + " estateguru_investment"}, baseEnv())
		if err != nil {
			return nil, err
		}
		if got, err := countRows(ctx, idir, "estateguru_investment"); err != nil || got != n {
			return nil, fmt.Errorf("sqlite3 .import stored %d rows (%v), want %d", got, err, n)
		}
		adir := filepath.Join(work, fmt.Sprintf("import-all-%d", i+1))
		if err := fixture.Connect(ctx, sb, adir, accounts); err != nil {
			return nil, err
		}
		step("write path: sqlite3 .import of everything syncer stored, run %d of %d", i+1, c.runs)
		// One transaction, as syncer's write is one.
		args := append([]string{"-cmd", "PRAGMA synchronous=NORMAL", filepath.Join(adir, "snapshots.db"), "BEGIN"}, allImports...)
		all, err := measure(ctx, sb, "sqlite3", append(args, "COMMIT"), baseEnv())
		if err != nil {
			return nil, err
		}
		// The same work: as many rows in each table as syncer stored.
		for _, table := range []string{"estateguru_investment", "estateguru_raw_chunk", "estateguru_position", "estateguru_snapshot"} {
			want, err := countRows(ctx, dir, table)
			if err != nil {
				return nil, err
			}
			if got, err := countRows(ctx, adir, table); err != nil || got != want {
				return nil, fmt.Errorf("sqlite3 .import of everything stored %d rows in %s (%v), syncer %d", got, table, err, want)
			}
		}
		ms, imports, importsAll = append(ms, m[0]), append(imports, im), append(importsAll, all)
		ratios = append(ratios, ratio(im.wall, m[0].wall))
		ratiosAll = append(ratiosAll, ratio(all.wall, m[0].wall))
	}
	syncerRate := perSecond(n, median(ms).wall)
	importRate := perSecond(n, median(imports).wall)
	r := median1(ratios)
	applies := n == 100_000
	return []line{
		section(fmt.Sprintf("write path: %d investments in one EstateGuru portfolio, no latency, the sandbox serving a prebuilt answer,\n"+
			"against sqlite3 .import of the same rows into the same (empty) table; both whole processes, same run", n)),
		{"syncer -once: wall", spread(ms, func(m measured) string { return m.wall.Round(time.Millisecond).String() }), ""},
		{"syncer -once: rows per second", fmt.Sprintf("%.0f", syncerRate), ""},
		{"sqlite3 .import: wall", spread(imports, func(m measured) string { return m.wall.Round(time.Millisecond).String() }), ""},
		{"sqlite3 .import: rows per second", fmt.Sprintf("%.0f", importRate), ""},
		{"syncer / sqlite3 .import (median of pairs)", fmt.Sprintf("%.2fx [%.2fx..%.2fx]", r, slices.Min(ratios), slices.Max(ratios)),
			target(applies, slices.Max(ratios) >= 0.8, r >= 0.8, ">= 0.8x")},
		{"sqlite3 .import of everything syncer stored (rows, raw pieces, snapshot, positions): wall",
			spread(importsAll, func(m measured) string { return m.wall.Round(time.Millisecond).String() }), ""},
		{"syncer / that .import (median of pairs)", fmt.Sprintf("%.2fx [%.2fx..%.2fx]", median1(ratiosAll), slices.Min(ratiosAll), slices.Max(ratiosAll)), ""},
		{"syncer peak memory (max RSS)", mb(peak(ms)), target(applies, peak(ms) < 150<<20, peak(ms) < 150<<20, "< 150 MB")},
	}, nil
}

func countRows(ctx context.Context, dir, table string) (int, error) {
	db, err := store.OpenReports(ctx, dir)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

func extraNote(env string) string {
	if strings.TrimSpace(env) == "" {
		return ""
	}
	return "; with " + env
}

// exportRows writes a table's rows as CSV, with sqlite3 itself.
func exportRows(ctx context.Context, db, table, csvPath string) error {
	f, err := os.Create(csvPath)
	if err != nil {
		return err
	}
	var stderr strings.Builder
	export := exec.CommandContext(ctx, "sqlite3", "-readonly", "-csv", db, "SELECT * FROM "+table)
	export.Stdout, export.Stderr = f, &stderr
	if err := export.Run(); err != nil {
		f.Close()
		return fmt.Errorf("exporting %s: %v %s", table, err, stderr.String())
	}
	return f.Close()
}
