// Command sandboxd runs the sandbox (both fake providers) as a standalone
// process, fills it with generated accounts, connects each of them in a data
// directory (one connection per account, holding a fresh refresh token and
// no access token) and serves until interrupted. It is how the baseline
// script, or syncer by hand, reaches the sandbox outside `go test`:
//
//	go run ./bench/sandboxd -data /tmp/bench-data -env /tmp/bench.env &
//	# wait for "ready", then
//	. /tmp/bench.env && bash bench/baseline.sh      # or: syncer -once
//
// The env file sets SYNCER_DATA_DIR, the sandbox's client credentials and
// SYNCER_ESTATEGURU_URL, SYNCER_RATE_LIMIT=0 and SYNCER_CONCURRENCY, for
// syncer and baseline.sh alike.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/syncerhq/syncer/bench/internal/fixture"
	"github.com/syncerhq/syncer/sync/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	latency := fs.Duration("latency", 50*time.Millisecond, "latency added to every answer")
	everReal := fs.Int("everreal", 500, "EverReal users to create")
	estateGuru := fs.Int("estateguru", 500, "EstateGuru investors to create")
	investments := fs.Int("investments", 50, "investments per investor")
	dataDir := fs.String("data", "", "data directory to create the connections in (required; must not hold connections of the same names)")
	envFile := fs.String("env", "", "file to write the environment to (shell syntax; required)")
	concurrency := fs.Int("concurrency", 16, "SYNCER_CONCURRENCY written to the env file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" || *envFile == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: sandboxd -data DIR -env FILE [-latency 50ms] [-everreal 500] [-estateguru 500] [-investments 50]")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}

	// RateLimit 0: the sandbox never answers 429 (it still sends EverReal's
	// X-RateLimit-* headers).
	sb, err := sandbox.Start(sandbox.Options{Latency: *latency})
	if err != nil {
		return err
	}
	defer sb.Close()
	accounts := fixture.Populate(sb, fixture.Spec{EverReal: *everReal, EstateGuru: *estateGuru, Investments: *investments})
	if err := fixture.Connect(ctx, sb, dir, accounts); err != nil {
		return err
	}

	var b strings.Builder
	b.WriteString("# written by bench/sandboxd; valid while it runs\n")
	for _, kv := range fixture.Env(sb, dir, *concurrency) {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s='%s'\n", k, v)
	}
	if err := os.WriteFile(*envFile, []byte(b.String()), 0o600); err != nil {
		return err
	}
	fmt.Printf("ready: %d connections in %s (EverReal %s, EstateGuru %s, latency %s); environment in %s\n",
		len(accounts), dir, sb.EverRealURL, sb.EstateGuruURL, *latency, *envFile)

	<-ctx.Done()
	st := sb.Stats()
	keys := make([]string, 0, len(st.Requests))
	total := 0
	for k, n := range st.Requests {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	fmt.Printf("sandboxd: %d requests answered", total)
	for _, k := range keys {
		fmt.Printf("; %s %d", k, st.Requests[k])
	}
	fmt.Println()
	return nil
}
