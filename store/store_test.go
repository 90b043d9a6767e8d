package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	syncer "github.com/syncerhq/syncer"
	"github.com/syncerhq/syncer/secret"
)

var day0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func connect(t *testing.T, s *Store, name, prov string) int64 {
	t.Helper()
	c, err := s.Connect(context.Background(), name, prov, "https://"+name+".example", secret.Token{Refresh: "r-" + secret.Secret(name)})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// portfolio is a snapshot with n investments EE0..EE{n-1} of 1.00 each.
func portfolio(cash int64, n int) EstateGuruSnapshot {
	return snapshotOf(cash, investments(n))
}

// investments are n investments EE0..EE{n-1} of 1.00 each.
func investments(n int) []Investment {
	var list []Investment
	for i := 0; i < n; i++ {
		list = append(list, Investment{
			LoanID: fmt.Sprintf("EE%d", i), Name: fmt.Sprintf("loan %d", i), Quantity: 1,
			InvestmentAmountCents: 100, MarketValueCents: 100, PrincipalLeftCents: 100,
		})
	}
	return list
}

func snapshotOf(cash int64, list []Investment) EstateGuruSnapshot {
	return EstateGuruSnapshot{Currency: "EUR", CashCents: cash, Raw: []byte(`{}`), Investments: InvestmentsOf(list)}
}

func saveEG(t *testing.T, s *Store, id int64, period time.Time, snap EstateGuruSnapshot) {
	t.Helper()
	if err := s.SaveEstateGuru(context.Background(), id, period, period.Add(time.Hour), snap); err != nil {
		t.Fatal(err)
	}
}

func saveER(t *testing.T, s *Store, id int64, period time.Time, scopes ...string) {
	t.Helper()
	snap := EverRealSnapshot{UserID: "u", Email: "u@example.com", CompanyID: "c1", Scopes: scopes, Raw: []byte(`{}`),
		Companies: []Company{{ID: "c1", Name: "Acme", IsDefault: true}, {ID: "c2", Name: "Other"}}}
	if err := s.SaveEverReal(context.Background(), id, period, period.Add(time.Hour), snap); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.snapshots.Exec(fmt.Sprintf("PRAGMA user_version = %d", syncer.SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err := Open(context.Background(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this syncer knows") {
		t.Fatalf("Open of a newer database: err = %v, want a refusal naming the version", err)
	}
	// Nothing was rewritten: the newer syncer still finds its version.
	db, err := OpenReports(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, want := count(t, db, "PRAGMA user_version"), syncer.SchemaVersion+1; got != want {
		t.Fatalf("user_version = %d, want %d", got, want)
	}
}

func TestMigrateFromVersion1KeepsData(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(5, 3))
	// What a version-1 database lacks: the report views.
	for _, v := range []string{"estateguru_portfolio_history", "estateguru_investment_changes", "everreal_users_by_company", "everreal_scope_changes", "latest_everreal_companies"} {
		if _, err := s.snapshots.Exec("DROP VIEW " + v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.snapshots.Exec("PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, dir)
	if got, want := count(t, s.snapshots.DB, "PRAGMA user_version"), syncer.SchemaVersion; got != want {
		t.Fatalf("user_version = %d, want %d", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT cash_cents FROM estateguru_portfolio_history"), 5; got != want {
		t.Fatalf("cash_cents in the new view = %d, want %d", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM latest_estateguru_investments"), 3; got != want {
		t.Fatalf("investments = %d, want %d", got, want)
	}
	// The schema is applied whole on every migration: running it again on
	// a migrated database must change nothing and fail nowhere.
	if _, err := s.snapshots.Exec(syncer.Schema); err != nil {
		t.Fatalf("schema.sql is not idempotent: %v", err)
	}
}

func TestPragmasOnEveryPooledConnection(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx := context.Background()
	for _, d := range []struct {
		db          *sql.DB
		file        string
		synchronous int
		mode        os.FileMode
	}{{s.snapshots.DB, SnapshotsFile, 1, 0o640}, {s.tokens.DB, TokensFile, 2, 0o600}} {
		// Three connections at once, so the pool has to open new ones: the
		// pragmas come from the DSN, not from whichever connection ran first.
		var conns []*sql.Conn
		for i := 0; i < 3; i++ {
			c, err := d.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			var journal string
			var sync, fk, busy int
			if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
				t.Fatal(err)
			}
			for q, v := range map[string]*int{"PRAGMA synchronous": &sync, "PRAGMA foreign_keys": &fk, "PRAGMA busy_timeout": &busy} {
				if err := c.QueryRowContext(ctx, q).Scan(v); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := fmt.Sprint(journal, sync, fk, busy), fmt.Sprint("wal", d.synchronous, 1, 10000); got != want {
				t.Fatalf("%s connection %d: journal_mode, synchronous, foreign_keys, busy_timeout = %s, want %s", d.file, i, got, want)
			}
			c.Close()
		}
		info, err := os.Stat(filepath.Join(dir, d.file))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.Mode().Perm(), d.mode; got != want {
			t.Fatalf("%s mode = %v, want %v", d.file, got, want)
		}
	}
}

func TestSnapshotPeriodUpsert(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(100, 3))
	saveEG(t, s, id, day0, portfolio(200, 1)) // same period: replaces, investments too
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_portfolios"), 1; got != want {
		t.Fatalf("snapshots after two saves in one period = %d, want %d", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investments"), 1; got != want {
		t.Fatalf("investments = %d, want %d (the replaced snapshot's must go)", got, want)
	}
	saveEG(t, s, id, day0.Add(24*time.Hour), portfolio(300, 2))
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_portfolios"), 2; got != want {
		t.Fatalf("snapshots after the next period = %d, want %d", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT cash_cents FROM latest_estateguru_portfolios"), 300; got != want {
		t.Fatalf("latest cash = %d, want %d", got, want)
	}
	if got, want := PeriodStart(time.Date(2026, 11, 23, 17, 4, 5, 0, time.FixedZone("x", 3600)), 24*time.Hour), day0; !got.Equal(want) {
		t.Fatalf("PeriodStart = %v, want %v (UTC days)", got, want)
	}
}

// history fills a store with conns connections of each provider and days
// daily snapshots each, the newest being day0.
func history(t *testing.T, s *Store, conns, days, investments int) {
	t.Helper()
	for c := 0; c < conns; c++ {
		eg := connect(t, s, fmt.Sprintf("eg%d", c), "estateguru")
		er := connect(t, s, fmt.Sprintf("er%d", c), "everreal")
		for d := days - 1; d >= 0; d-- {
			at := day0.Add(-time.Duration(d) * 24 * time.Hour)
			saveEG(t, s, eg, at, portfolio(int64(1000*c+d), investments))
			saveER(t, s, er, at, "offline_access", fmt.Sprint("day", d))
		}
	}
}

// fastViews are the views that must cost one snapshot, not the history.
var fastViews = []string{
	"latest_everreal_users", "latest_everreal_companies", "latest_estateguru_portfolios",
	"latest_estateguru_investments", "everreal_users_by_company",
}

func TestLatestViewsSeekThePrimaryKey(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 3, 30, 20)
	check := func(when string) {
		for _, v := range fastViews {
			for _, q := range []string{"SELECT * FROM " + v, "SELECT * FROM " + v + " WHERE connection = 'eg1'"} {
				plan := queryPlan(t, s.snapshots.DB, q)
				for _, line := range plan {
					// Walking connection (one row each) is the point; walking
					// any snapshot table is the history, and not allowed.
					// json_each over one snapshot's list of raw pieces (schema
					// 5) is a VIRTUAL TABLE scan of that one value.
					if strings.HasPrefix(line, "SCAN ") && !strings.HasPrefix(line, "SCAN latest") &&
						!strings.Contains(line, " VIRTUAL TABLE ") {
						t.Fatalf("%s (%s): plan has a full scan %q:\n%s", q, when, line, strings.Join(plan, "\n"))
					}
				}
				if !strings.Contains(strings.Join(plan, "\n"), "(connection_id=? AND snapshot_at=?)") {
					t.Fatalf("%s (%s): plan does not seek (connection_id, snapshot_at):\n%s", q, when, strings.Join(plan, "\n"))
				}
			}
		}
	}
	check("no statistics")
	// Statistics change the planner's mind, if anything does.
	if _, err := s.snapshots.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	check("after ANALYZE")
}

func queryPlan(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN " + q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

func TestLatestViewsAreTheNewestSnapshot(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 3, 4, 5)
	// A connection whose sync stopped two days ago: its newest is older.
	stale := connect(t, s, "stale", "estateguru")
	saveEG(t, s, stale, day0.Add(-72*time.Hour), portfolio(1, 2))
	saveEG(t, s, stale, day0.Add(-48*time.Hour), portfolio(2, 2))

	for _, c := range []struct{ latest, base, table string }{
		{"latest_everreal_users", "everreal_users", "everreal_snapshot"},
		{"latest_everreal_companies", "everreal_companies", "everreal_snapshot"},
		{"latest_estateguru_portfolios", "estateguru_portfolios", "estateguru_snapshot"},
		{"latest_estateguru_investments", "estateguru_investments", "estateguru_snapshot"},
	} {
		if got, want := columns(t, s.snapshots.DB, c.latest), columns(t, s.snapshots.DB, c.base); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s columns = %v, want those of %s: %v", c.latest, got, c.base, want)
		}
		naive := fmt.Sprintf(`SELECT * FROM %s b WHERE snapshot_at = (SELECT max(snapshot_at) FROM %s m WHERE m.connection_id = b.connection_id)`, c.base, c.table)
		got := dump(t, s.snapshots.DB, "SELECT * FROM "+c.latest+" ORDER BY 1, 2, 3, 4")
		want := dump(t, s.snapshots.DB, naive+" ORDER BY 1, 2, 3, 4")
		if got != want || got == "" {
			t.Fatalf("%s:\n%s\nwant:\n%s", c.latest, got, want)
		}
	}
	if got, want := count(t, s.snapshots.DB, "SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'stale'"), 2; got != want {
		t.Fatalf("stale connection's latest cash = %d, want %d", got, want)
	}
}

func columns(t *testing.T, db *sql.DB, view string) []string {
	t.Helper()
	rows, err := db.Query("SELECT name FROM pragma_table_info(?)", view)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

// dump renders a query's rows as text, for comparing results.
func dump(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			fmt.Fprintf(&b, "%v|", v)
		}
		b.WriteString("\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestInvestmentChangesAreLinear(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0.Add(-24*time.Hour), portfolio(0, 5000))
	newer := investments(5000)
	for i := 0; i < 2000; i++ {
		newer[i].LoanID = fmt.Sprintf("NEW%d", i)
	}
	saveEG(t, s, id, day0, snapshotOf(0, newer))
	q := "SELECT change, count(*) FROM estateguru_investment_changes GROUP BY change ORDER BY change"
	if got, want := dump(t, s.snapshots.DB, q), "appeared|2000|\ndisappeared|2000|\n"; got != want {
		t.Fatalf("changes:\n%s\nwant:\n%s", got, want)
	}
	// Each side is looked up in an index of the other, never scanned once
	// per row: a scan there is quadratic (minutes for a large portfolio).
	plan := strings.Join(queryPlan(t, s.snapshots.DB, q), "\n")
	for _, want := range []string{"SEARCH o USING AUTOMATIC COVERING INDEX", "SEARCH n USING AUTOMATIC COVERING INDEX"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("plan lacks %q:\n%s", want, plan)
		}
	}
	if strings.Contains(plan, "LIST SUBQUERY") || strings.Contains(plan, "SCAN i") {
		t.Fatalf("plan scans per row:\n%s", plan)
	}
}

func TestRetainKeepsNewerAndEachConnectionsNewest(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 2, 10, 3) // day0-9d .. day0, for eg0, eg1, er0, er1
	stale := connect(t, s, "stale", "estateguru")
	saveEG(t, s, stale, day0.Add(-30*24*time.Hour), portfolio(1, 2))
	saveEG(t, s, stale, day0.Add(-20*24*time.Hour), portfolio(2, 2))
	// A snapshot far over one batch, to be deleted on its own.
	big := connect(t, s, "big", "estateguru")
	saveEG(t, s, big, day0.Add(-8*24*time.Hour), portfolio(3, retainBatchRows*2))
	saveEG(t, s, big, day0, portfolio(4, 1))

	cutoff := day0.Add(-5 * 24 * time.Hour)
	n, err := s.Retain(context.Background(), cutoff)
	if err != nil {
		t.Fatal(err)
	}
	// eg0, eg1, er0, er1 lose days 6..9 (4 each), stale its older one, big its older one.
	if got, want := n, 4*4+1+1; got != want {
		t.Fatalf("deleted %d snapshots, want %d", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT min(snapshot_at) = ? FROM estateguru_portfolios WHERE connection = 'eg0'", cutoff.Format(TimeFormat)), 1; got != want {
		t.Fatalf("eg0's oldest snapshot is not the cutoff's period")
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_portfolios WHERE connection = 'stale'"), 1; got != want {
		t.Fatalf("stale snapshots = %d, want %d (its newest stays, however old)", got, want)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'stale'"), 2; got != want {
		t.Fatalf("stale latest cash = %d, want %d", got, want)
	}
	// The children went with their snapshots (cascade), none orphaned.
	for _, q := range []string{
		"SELECT count(*) FROM estateguru_investment i WHERE NOT EXISTS (SELECT 1 FROM estateguru_snapshot s WHERE s.connection_id = i.connection_id AND s.snapshot_at = i.snapshot_at)",
		"SELECT count(*) FROM everreal_company c WHERE NOT EXISTS (SELECT 1 FROM everreal_snapshot s WHERE s.connection_id = c.connection_id AND s.snapshot_at = c.snapshot_at)",
		"SELECT count(*) FROM estateguru_snapshot WHERE snapshot_at < '" + cutoff.Format(TimeFormat) + "' AND connection_id <> " + fmt.Sprint(stale),
		"SELECT count(*) FROM everreal_snapshot WHERE snapshot_at < '" + cutoff.Format(TimeFormat) + "'",
	} {
		if got := count(t, s.snapshots.DB, q); got != 0 {
			t.Fatalf("%s = %d, want 0", q, got)
		}
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investments WHERE connection = 'big'"), 1; got != want {
		t.Fatalf("big's investments = %d, want %d", got, want)
	}
	// Nothing left to do: a second pass deletes nothing.
	if n, err := s.Retain(context.Background(), cutoff); err != nil || n != 0 {
		t.Fatalf("second Retain = %d, %v; want 0, nil", n, err)
	}
}

func TestRetainStopsWhenCancelled(t *testing.T) {
	s := openStore(t, t.TempDir())
	history(t, s, 1, 3, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.Retain(ctx, day0)
	if err == nil || n != 0 {
		t.Fatalf("Retain with a cancelled context = %d, %v; want 0 and an error", n, err)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_snapshot"), 3; got != want {
		t.Fatalf("snapshots = %d, want %d", got, want)
	}
}

func walSize(t *testing.T, dir, file string) int64 {
	t.Helper()
	info, err := os.Stat(filepath.Join(dir, file+"-wal"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func TestCheckpointTruncatesUnlessAReaderHoldsTheWAL(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx := context.Background()
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(1, 3000))
	if walSize(t, dir, SnapshotsFile) == 0 {
		t.Fatal("test setup: the WAL is empty before the checkpoint")
	}
	cps, err := s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cps), 2; got != want {
		t.Fatalf("checkpointed %d files, want %d", got, want)
	}
	for _, c := range cps {
		if c.Busy {
			t.Fatalf("%s: busy with no reader", c.File)
		}
		if got := walSize(t, dir, c.File); got != 0 {
			t.Fatalf("%s-wal is %d bytes after a checkpoint with no reader, want 0", c.File, got)
		}
	}

	// A reporting session holds a read transaction; a sync writes.
	reports, err := OpenReports(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reports.Close()
	tx, err := reports.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var before int
	if err := tx.QueryRow("SELECT cash_cents FROM latest_estateguru_portfolios").Scan(&before); err != nil {
		t.Fatal(err)
	}
	saveEG(t, s, id, day0.Add(24*time.Hour), portfolio(2, 3000)) // the writer is not held up
	cps, err = s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cps[0].Busy || cps[0].File != SnapshotsFile {
		t.Fatalf("checkpoint under a reader = %+v, want snapshots.db busy", cps[0])
	}
	if walSize(t, dir, SnapshotsFile) == 0 {
		t.Fatal("the WAL was truncated under a reader that still needs it")
	}
	var during int
	if err := tx.QueryRow("SELECT cash_cents FROM latest_estateguru_portfolios").Scan(&during); err != nil {
		t.Fatal(err)
	}
	if during != before {
		t.Fatalf("the reader's snapshot changed under it: %d, then %d", before, during)
	}
	tx.Rollback()

	cps, err = s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cps[0].Busy || walSize(t, dir, SnapshotsFile) != 0 {
		t.Fatalf("after the reader ended: %+v, WAL %d bytes; want truncated", cps[0], walSize(t, dir, SnapshotsFile))
	}
	// The checkpoint's connection went back to the pool waiting for locks
	// like the others.
	s.snapshots.SetMaxOpenConns(1)
	if got, want := count(t, s.snapshots.DB, "PRAGMA busy_timeout"), 10000; got != want {
		t.Fatalf("busy_timeout after Checkpoint = %d, want %d", got, want)
	}
}

func TestBackupIsConsistentAndNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx := context.Background()
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(7, 50))

	// A write transaction is open, uncommitted, while the backup runs.
	tx, err := s.snapshots.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("DELETE FROM estateguru_snapshot"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "copy.db")
	size, err := Backup(ctx, dir, out)
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != size || info.Mode().Perm() != 0o640 {
		t.Fatalf("backup: size %d mode %v; want %d and 0640", info.Size(), info.Mode().Perm(), size)
	}
	// One self-contained file: nothing beside it to copy along.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(out + suffix); err == nil {
			t.Fatalf("backup left %s%s beside the copy", out, suffix)
		}
	}
	db, err := sql.Open("sqlite", DSN(out, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, want := count(t, db, "SELECT count(*) FROM estateguru_investments"), 50; got != want {
		t.Fatalf("investments in the backup = %d, want %d (the committed state)", got, want)
	}
	if got, want := count(t, db, "PRAGMA user_version"), syncer.SchemaVersion; got != want {
		t.Fatalf("backup user_version = %d, want %d", got, want)
	}
	if _, err := Backup(ctx, dir, out); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second backup to the same file: err = %v, want a refusal", err)
	}
	if got := count(t, db, "SELECT count(*) FROM estateguru_investments"); got != 50 {
		t.Fatalf("the refused backup changed the existing file")
	}
}
