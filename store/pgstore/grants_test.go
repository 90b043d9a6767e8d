package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/store/pgstore/pgtest"
)

// TestReportingRoleReadsViewsNotTokens applies grants.sql, as
// docs/postgres.md says, and shows the reporting role reading every view
// and refused both writes and the vault.
func TestReportingRoleReadsViewsNotTokens(t *testing.T) {
	dbURL := pgtest.URL(t)
	admin := pgtest.AdminURL(t, dbURL)
	ctx := context.Background()
	s := open(t, dbURL, pgstore.Options{})
	if _, err := s.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token("r1")); err != nil {
		t.Fatal(err)
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "reporting_" + hex.EncodeToString(b)
	pgtest.Exec(t, admin, "CREATE ROLE "+role+" LOGIN PASSWORD 'reporting-pw'")
	t.Cleanup(func() { pgtest.Exec(t, admin, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	grants, err := os.ReadFile("grants.sql")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dbURL, strings.ReplaceAll(string(grants), "syncer_reporting", role))

	conn, err := pgx.Connect(ctx, pgtest.WithUser(dbURL, role, "reporting-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := s.Pool().Query(ctx, `SELECT table_name FROM information_schema.views WHERE table_schema = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	views, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(views) < 15 {
		t.Fatalf("views = %v (%v), want the 15 of schema.sql", views, err)
	}
	for _, v := range views {
		if _, err := conn.Exec(ctx, "SELECT * FROM "+v+" LIMIT 1"); err != nil {
			t.Errorf("the reporting role cannot read %s: %v", v, err)
		}
	}
	for _, q := range []string{
		"SELECT refresh_token FROM vault.token",
		"SELECT * FROM vault.meta",
		"DELETE FROM connection",
		"UPDATE connection SET state = 'disconnected'",
		"INSERT INTO sync_run (trigger, started_at) VALUES ('once', '2026-11-23T06:00:00Z')",
		"CREATE TABLE public.mine (x int)",
		"DROP VIEW connections",
	} {
		_, err := conn.Exec(ctx, q)
		if err == nil || !strings.Contains(err.Error(), "42501") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%s as the reporting role: err = %v, want a refusal by the grants", q, err)
		}
	}
}
