package pgstore_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/store/pgstore/pgtest"
)

// TestSameViewsAndColumnsAsSQLite: every view of schema.sql exists in
// PostgreSQL with the same columns in the same order (PostgreSQL may add
// columns at the end, as views may gain columns).
func TestSameViewsAndColumnsAsSQLite(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	dir := t.TempDir()
	lite, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lite.Close()
	db, err := store.OpenReports(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string][]string{}
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'view' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var views []string
	for rows.Next() {
		var v string
		rows.Scan(&v)
		views = append(views, v)
	}
	rows.Close()
	for _, v := range views {
		cols, err := columnsOf(ctx, db, "SELECT name FROM pragma_table_info(?) ORDER BY cid", v)
		if err != nil {
			t.Fatal(err)
		}
		want[v] = cols
	}
	if len(want) < 15 {
		t.Fatalf("SQLite has %d views: %v", len(want), views)
	}

	s := open(t, dbURL, pgstore.Options{})
	for v, cols := range want {
		r, err := s.Pool().Query(ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`, v)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for r.Next() {
			var c string
			r.Scan(&c)
			got = append(got, c)
		}
		r.Close()
		if len(got) < len(cols) || !slices.Equal(got[:len(cols)], cols) {
			t.Errorf("view %s: PostgreSQL columns %v, SQLite %v", v, got, cols)
		}
	}
}

func columnsOf(ctx context.Context, db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
