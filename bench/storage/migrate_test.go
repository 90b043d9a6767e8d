package storage

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
)

// BenchmarkMigrateToSchema5 times the first start of this syncer on a
// snapshots.db written by schema 4 (every snapshot whole): 10 EstateGuru
// connections x 30 daily periods x 1,000 investments (10% changing a
// period), raw answers of about 290 bytes an investment. It reports the
// size before and after and the snapshots compacted per second.
func BenchmarkMigrateToSchema5(b *testing.B) {
	const conns, days, n = 10, 30, 1000
	schema4, err := os.ReadFile(filepath.Join("..", "..", "store", "testdata", "schema4.sql"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "data")
		if err := os.Mkdir(dir, 0o750); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, store.SnapshotsFile)
		writeSchema4(b, path, string(schema4), conns, days, n)
		before := fileSize(b, path)
		var log bytes.Buffer
		b.StartTimer()
		start := time.Now()
		st, err := store.Open(context.Background(), dir, store.Options{Log: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		if _, err := st.Checkpoint(context.Background()); err != nil {
			b.Fatal(err)
		}
		st.Close()
		if !strings.Contains(log.String(), fmt.Sprintf("snapshots_done=%d", conns*days)) {
			b.Fatalf("no final progress line:\n%s", log.String())
		}
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			b.Fatal(err)
		}
		vacuumed := filepath.Join(filepath.Dir(dir), "vacuumed.db")
		if _, err := db.Exec("VACUUM INTO ?", vacuumed); err != nil {
			b.Fatal(err)
		}
		db.Close()
		b.Logf("schema 4: %d bytes; migrated in %v (%.0f snapshots/s); after: %d bytes (the freed pages stay in a file made before schema 5), %d once vacuumed",
			before, took.Round(time.Millisecond), float64(conns*days)/took.Seconds(), fileSize(b, path), fileSize(b, vacuumed))
		b.ReportMetric(float64(conns*days)/took.Seconds(), "snapshots/s")
	}
}

// writeSchema4 writes what schema 4's SaveEstateGuru wrote: every row of
// every snapshot, raw answers whole.
func writeSchema4(b *testing.B, path, schema string, conns, days, n int) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	db, err := sql.Open("sqlite", store.DSN(path, []string{"journal_mode(WAL)", "synchronous(NORMAL)"}, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + "; PRAGMA user_version = 4"); err != nil {
		b.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	inv, err := tx.Prepare(`INSERT INTO estateguru_investment (connection_id, snapshot_at, position, loan_id, name, quantity,
		investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents, change_cents, resource_path)
		VALUES (?, ?, ?, ?, ?, 1, 10000, ?, 10000, ?, 0, 0, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for c := 1; c <= conns; c++ {
		if _, err := tx.Exec(`INSERT INTO connection (id, name, provider, base_url, created_at, updated_at)
			VALUES (?, ?, 'estateguru', 'https://estateguru.co', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`, c, fmt.Sprintf("eg%02d", c)); err != nil {
			b.Fatal(err)
		}
		market := make([]int64, n)
		for d := 0; d < days; d++ {
			for _, k := range rng.Perm(n)[:n/10] {
				market[k] += 1 + rng.Int64N(500)
			}
			at := day0.Add(time.Duration(d) * 24 * time.Hour).Format(store.TimeFormat)
			var raw strings.Builder
			raw.WriteString(`{"currency":"EUR","cash":"1.00","investments":[`)
			for k := 0; k < n; k++ {
				if k > 0 {
					raw.WriteByte(',')
				}
				fmt.Fprintf(&raw, `{"change":"0.00","investment_amount":"100.00","market_value":"%d.%02d","name":"#%d Business loan (Estonia)","principal_left":"100.00","profit":"%d.%02d","quantity":"1","realized_income":"0.00","resourcePath":"https://estateguru.co/portal/investment/single/EE%05d"}`,
					market[k]/100, market[k]%100, 1000+k, market[k]/100, market[k]%100, k)
			}
			raw.WriteString(`]}`)
			if _, err := tx.Exec(`INSERT INTO estateguru_snapshot (connection_id, snapshot_at, fetched_at, currency, cash_cents, investments,
				investment_amount_cents, market_value_cents, principal_left_cents, profit_cents, realized_income_cents, raw)
				VALUES (?, ?, ?, 'EUR', 100, ?, 0, 0, 0, 0, 0, ?)`, c, at, at, n, raw.String()); err != nil {
				b.Fatal(err)
			}
			for k := 0; k < n; k++ {
				if _, err := inv.Exec(c, at, k, fmt.Sprintf("EE%05d", k), fmt.Sprintf("#%d Business loan (Estonia)", 1000+k),
					market[k], market[k], fmt.Sprintf("https://estateguru.co/portal/investment/single/EE%05d", k)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
}

func fileSize(b *testing.B, path string) int64 {
	b.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
