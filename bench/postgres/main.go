// Command postgres is bench/run's companion for PostgreSQL (issue 16): the
// real binary against the sandbox at 50 ms, 1,000 connections (half each
// provider, 50 investments each) in one PostgreSQL database, synced by one
// `syncer -once` and then by two started together (SYNCER_CONCURRENCY=16
// each), wall time side by side. Every sync costs a refresh and a data call
// (fresh refresh tokens, no access token), EstateGuru's rotating.
//
//	bench/postgres                         # starts a throwaway server (.ci/postgres)
//	go run ./bench/postgres -syncer BIN -url postgres://...   # a server of yours; its schemas are emptied
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/bench/internal/fixture"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
	"github.com/syncerhq/syncer/sync/sandbox"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/postgres:", err)
		os.Exit(1)
	}
}

func run() error {
	syncer := flag.String("syncer", "", "the syncer binary (required)")
	dbURL := flag.String("url", os.Getenv("SYNCER_TEST_DATABASE_URL"), "database to use; its schemas public and vault are emptied")
	conns := flag.Int("connections", 1000, "connections, half each provider")
	investments := flag.Int("investments", 50, "investments per EstateGuru investor")
	latency := flag.Duration("latency", 50*time.Millisecond, "sandbox latency per answer")
	concurrency := flag.Int("concurrency", 16, "SYNCER_CONCURRENCY of each instance")
	maxInstances := flag.Int("instances", 2, "measure 1 to this many instances")
	flag.Parse()
	if *syncer == "" || *dbURL == "" {
		return fmt.Errorf("usage: postgres -syncer BIN -url postgres://... (or run bench/postgres)")
	}
	ctx := context.Background()
	sb, err := sandbox.Start(sandbox.Options{Latency: *latency})
	if err != nil {
		return err
	}
	defer sb.Close()
	accounts := fixture.Populate(sb, fixture.Spec{EverReal: *conns / 2, EstateGuru: *conns - *conns/2, Investments: *investments})
	tmp, err := os.MkdirTemp("", "bench-postgres")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	keyFile := filepath.Join(tmp, "token.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return err
	}
	fmt.Printf("bench/postgres: %d connections (%d investments each EstateGuru), sandbox latency %s, SYNCER_CONCURRENCY=%d per instance\n",
		len(accounts), *investments, *latency, *concurrency)
	fmt.Printf("%-10s %10s %12s %s\n", "instances", "wall", "conns/s", "synced by each")
	var first time.Duration
	for n := 1; n <= *maxInstances; n++ {
		if err := reset(ctx, *dbURL); err != nil {
			return err
		}
		if err := connect(ctx, sb, *dbURL, key, accounts); err != nil {
			return err
		}
		before := sb.Stats()
		env := append(fixture.Env(sb, filepath.Join(tmp, "unused"), *concurrency),
			"PATH="+os.Getenv("PATH"), "SYNCER_DATABASE_URL="+*dbURL, "SYNCER_TOKEN_KEY_FILE="+keyFile)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, n)
		outs := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.CommandContext(ctx, *syncer, "-once")
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				outs[i], errs[i] = string(out), err
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("instance %d: %v\n%s", i+1, err, outs[i])
			}
		}
		each, total, err := verify(ctx, *dbURL)
		if err != nil {
			return err
		}
		after := sb.Stats()
		if total != len(accounts) || after.RefreshReuse != before.RefreshReuse || after.RefusedRefresh != before.RefusedRefresh {
			return fmt.Errorf("%d instance(s): %d of %d connections synced, %d refresh tokens reused, %d refused",
				n, total, len(accounts), after.RefreshReuse-before.RefreshReuse, after.RefusedRefresh-before.RefusedRefresh)
		}
		if n == 1 {
			first = wall
		}
		fmt.Printf("%-10d %10s %12.1f %s", n, wall.Round(time.Millisecond), float64(total)/wall.Seconds(), each)
		if n > 1 {
			fmt.Printf("   (%.2fx one instance)", first.Seconds()/wall.Seconds())
		}
		fmt.Println()
	}
	return nil
}

func reset(ctx context.Context, dbURL string) error {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP SCHEMA IF EXISTS vault CASCADE; DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
	return err
}

func connect(ctx context.Context, sb *sandbox.Sandbox, dbURL string, key []byte, accounts []fixture.Account) error {
	st, err := pgstore.Open(ctx, dbURL, pgstore.Options{TokenKey: key})
	if err != nil {
		return err
	}
	defer st.Close()
	for _, a := range accounts {
		var tok provider.Token
		switch a.Provider {
		case everreal.Name:
			tok.Refresh = provider.Secret(sb.IssueEverRealRefreshToken(a.Login))
		case estateguru.Name:
			tok.Refresh = provider.Secret(sb.IssueEstateGuruRefreshToken(a.Login))
		}
		if _, err := st.Connect(ctx, a.Name, a.Provider, a.BaseURL, tok); err != nil {
			return err
		}
	}
	return nil
}

// verify returns the connections synced by each instance and in all, and
// fails if one was synced by two.
func verify(ctx context.Context, dbURL string) (string, int, error) {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", 0, err
	}
	defer c.Close(ctx)
	var twice int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM (SELECT connection FROM sync_results WHERE status = 'ok'
		GROUP BY 1 HAVING count(*) > 1) x`).Scan(&twice); err != nil {
		return "", 0, err
	}
	if twice > 0 {
		return "", 0, fmt.Errorf("%d connections synced twice", twice)
	}
	rows, err := c.Query(ctx, "SELECT connections_ok FROM sync_runs ORDER BY id")
	if err != nil {
		return "", 0, err
	}
	oks, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return "", 0, err
	}
	var parts []string
	total := 0
	for _, n := range oks {
		parts = append(parts, fmt.Sprint(n))
		total += int(n)
	}
	return strings.Join(parts, " + "), total, nil
}
