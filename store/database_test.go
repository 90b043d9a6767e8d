package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/secret"
)

// Writers of one process queue on the write gate, not in SQLite's busy
// handler: with a busy timeout far shorter than any write, 16 goroutines
// saving snapshots, results and tokens at once all succeed. Without the gate
// most of them fail with "database is locked".
func TestConcurrentWritersOfOneProcessNeverSeeBusy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{BusyTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run, err := s.StartRun(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	const writers = 16
	ids := make([]int64, writers)
	for i := range ids {
		ids[i] = connect(t, s, fmt.Sprintf("eg%02d", i), "estateguru")
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for day := range 5 {
				at := day0.Add(time.Duration(day) * 24 * time.Hour)
				if err := s.SaveToken(ctx, id, secret.Token{Refresh: secret.Secret(fmt.Sprintf("r%d-%d", i, day))}); err != nil {
					errs <- err
					return
				}
				if err := s.SaveEstateGuru(ctx, id, at, at, portfolio(int64(day), 500)); err != nil {
					errs <- err
					return
				}
				if err := s.RecordResult(ctx, run, id, ResultOK, "", at, at); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investments"), writers*5*500; got != want {
		t.Fatalf("%d investments stored, want %d", got, want)
	}
}

// A new snapshots.db gets the large page size and keeps the statement
// journal in memory; a database created with SQLite's default page size
// keeps it, and works.
func TestSnapshotsPageSize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	if got := count(t, s.snapshots.DB, "PRAGMA page_size"); got != snapshotsPageSize {
		t.Fatalf("new snapshots.db: page_size %d, want %d", got, snapshotsPageSize)
	}
	if got := count(t, s.snapshots.DB, "PRAGMA temp_store"); got != 2 {
		t.Fatalf("temp_store %d, want 2 (memory)", got)
	}
	if got := count(t, s.tokens.DB, "PRAGMA page_size"); got != 4096 {
		t.Fatalf("tokens.db: page_size %d, want SQLite's default 4096", got)
	}

	old := t.TempDir()
	db, err := sql.Open("sqlite", DSN(filepath.Join(old, SnapshotsFile), []string{"page_size(4096)", "journal_mode(WAL)"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE before_syncer (x)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openStore(t, old)
	if got := count(t, s.snapshots.DB, "PRAGMA page_size"); got != 4096 {
		t.Fatalf("existing snapshots.db: page_size %d, want 4096 kept", got)
	}
	id := connect(t, s, "eg", "estateguru")
	saveEG(t, s, id, day0, portfolio(1, 1000))
	if got := count(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_investments"); got != 1000 {
		t.Fatalf("%d investments, want 1000", got)
	}
}
