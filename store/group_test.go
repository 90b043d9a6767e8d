package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/secret"
)

// holdGate takes d's write gate, as a writer in the middle of a long
// transaction would, and returns the function that lets it go.
func holdGate(t *testing.T, d *database) (release func()) {
	t.Helper()
	d.gate <- struct{}{}
	var once gosync.Once
	release = func() { once.Do(func() { <-d.gate }) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until n writes wait in d's queue.
func waitQueued(t *testing.T, d *database, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.queue.mu.Lock()
		got := len(d.queue.waiting)
		d.queue.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommitKeepsEachWriteApart: snapshots that queued while another
// write held snapshots.db are committed together, and the ones that fail
// (an answer that turns out bad as it is read, a connection that no longer
// exists) leave nothing behind, while the others are stored whole.
func TestGroupCommitKeepsEachWriteApart(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	var good []int64
	for i := range 4 {
		good = append(good, connect(t, s, fmt.Sprintf("eg-%d", i), "estateguru"))
	}
	bad := connect(t, s, "eg-bad", "estateguru")
	before := s.snapshots.queue.commits.Load()

	release := holdGate(t, s.snapshots)
	errs := make(map[int64]error)
	var mu gosync.Mutex
	var wg gosync.WaitGroup
	save := func(id int64, snap EstateGuruSnapshot) {
		wg.Go(func() {
			err := s.SaveEstateGuru(ctx, id, day0, day0, snap)
			mu.Lock()
			errs[id] = err
			mu.Unlock()
		})
	}
	for i, id := range good {
		save(id, portfolio(int64(100*(i+1)), 3+i))
	}
	broken := portfolio(999, 5)
	broken.Investments = func(yield func(Investment, error) bool) {
		for inv := range InvestmentsOf(investments(5)) {
			if !yield(inv, nil) {
				return
			}
		}
		yield(Investment{}, errors.New("investment 6 is not a JSON object"))
	}
	save(bad, broken)
	save(9999, portfolio(1, 2)) // no such connection
	waitQueued(t, s.snapshots, len(good)+2)
	release()
	wg.Wait()

	if got := s.snapshots.queue.commits.Load() - before; got != 1 {
		t.Errorf("%d commits for the six queued writes, want 1", got)
	}
	for i, id := range good {
		if errs[id] != nil {
			t.Errorf("connection %d: %v", id, errs[id])
			continue
		}
		var cash, n int64
		if err := s.snapshots.QueryRow(`SELECT cash_cents, investments FROM estateguru_snapshot WHERE connection_id = ?`, id).Scan(&cash, &n); err != nil {
			t.Fatalf("connection %d: %v", id, err)
		}
		var rows int64
		s.snapshots.QueryRow(`SELECT count(*) FROM estateguru_investment WHERE connection_id = ?`, id).Scan(&rows)
		if cash != int64(100*(i+1)) || n != int64(3+i) || rows != n {
			t.Errorf("connection %d: cash %d, %d investments, %d rows; want %d, %d, %d", id, cash, n, rows, 100*(i+1), 3+i, 3+i)
		}
	}
	if errs[bad] == nil || errs[9999] == nil {
		t.Fatalf("the bad writes should fail: bad answer %v, missing connection %v", errs[bad], errs[9999])
	}
	for _, id := range []int64{bad, 9999} {
		var n int
		s.snapshots.QueryRow(`SELECT (SELECT count(*) FROM estateguru_snapshot WHERE connection_id = ?1)
			+ (SELECT count(*) FROM estateguru_investment WHERE connection_id = ?1)`, id).Scan(&n)
		if n != 0 {
			t.Errorf("connection %d: %d rows left by a failed write, want 0", id, n)
		}
	}
}

// TestGroupCommitSavesEveryToken: tokens saved while tokens.db is busy are
// committed (and synced to disk) together, and each is the one its caller
// saved.
func TestGroupCommitSavesEveryToken(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	var ids []int64
	for i := range 20 {
		ids = append(ids, connect(t, s, fmt.Sprintf("c-%d", i), "estateguru"))
	}
	before := s.tokens.queue.commits.Load()
	release := holdGate(t, s.tokens)
	var wg gosync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			tok := secret.Token{Refresh: secret.Secret(fmt.Sprintf("refresh-%d", id)), Access: secret.Secret(fmt.Sprintf("access-%d", id))}
			if err := s.SaveToken(ctx, id, tok); err != nil {
				t.Errorf("SaveToken %d: %v", id, err)
			}
		})
	}
	waitQueued(t, s.tokens, len(ids))
	release()
	wg.Wait()
	if got := s.tokens.queue.commits.Load() - before; got != 1 {
		t.Errorf("%d commits of tokens.db for %d tokens saved at once, want 1", got, len(ids))
	}
	for _, id := range ids {
		st, err := s.Token(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Refresh.Reveal() != fmt.Sprintf("refresh-%d", id) || st.Access.Reveal() != fmt.Sprintf("access-%d", id) {
			t.Errorf("connection %d: tokens not the ones saved", id)
		}
	}
}

// TestGroupCommitGivesUpAQueuedWrite: a write whose caller gives up while
// it waits is not written.
func TestGroupCommitGivesUpAQueuedWrite(t *testing.T) {
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	release := holdGate(t, s.snapshots)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.SaveEstateGuru(ctx, id, day0, day0, portfolio(1, 2)) }()
	waitQueued(t, s.snapshots, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	release()
	var n int
	s.snapshots.QueryRow(`SELECT count(*) FROM estateguru_snapshot`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d snapshots written by a write given up, want 0", n)
	}
}

// inPowersOfTwo covers every row once, in order, in runs of a few sizes.
func TestInPowersOfTwo(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 63, 64, 100, 511, 512} {
		next := 0
		err := inPowersOfTwo(n, func(from, size int) error {
			if from != next || size&(size-1) != 0 || size == 0 {
				t.Errorf("n=%d: run at %d of %d after %d rows", n, from, size, next)
			}
			next = from + size
			return nil
		})
		if err != nil || next != n {
			t.Errorf("n=%d: covered %d rows, %v", n, next, err)
		}
	}
}

// The prepared statements stay few whatever the portfolios' sizes: a
// statement for a number of rows comes in power-of-two sizes only.
func TestPreparedStatementsStayFew(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	id := connect(t, s, "eg", "estateguru")
	for n := 1; n <= 300; n += 7 {
		snap := portfolio(int64(n), n)
		snap.Raw = []byte(strings.Repeat(`{"name":"x","value":"1.00"},`, n))
		if err := s.SaveEstateGuru(ctx, id, day0.Add(time.Duration(n)*24*time.Hour), day0, snap); err != nil {
			t.Fatal(err)
		}
	}
	count := 0
	s.snapshots.stmts.Range(func(_, _ any) bool { count++; return true })
	t.Logf("%d statements", count)
	if count > 60 {
		t.Fatalf("%d statements prepared after portfolios of 43 sizes, want at most 60", count)
	}
}

// batchBesideAQuitter queues, while the gate is held, quitter's snapshot
// under ctx (which the test cancels) and then keeper's re-login state,
// lets the batch go, and returns their outcomes.
func batchBesideAQuitter(t *testing.T, s *Store, release func(), ctx context.Context, quitter int64, snap EstateGuruSnapshot, keeper int64) (quit, keep chan error) {
	t.Helper()
	quit, keep = make(chan error, 1), make(chan error, 1)
	go func() { quit <- s.SaveEstateGuru(ctx, quitter, day0, day0, snap) }()
	waitQueued(t, s.snapshots, 1)
	go func() { keep <- s.SetState(context.Background(), keeper, StateReauthRequired, "invalid_grant") }()
	waitQueued(t, s.snapshots, 2)
	release()
	return quit, keep
}

// A write whose caller gives up while the batch is being written is rolled
// back alone; the writes committed with it are kept (an interrupted
// statement would have rolled back the whole transaction).
func TestGroupCommitKeepsTheBatchWhenOneCallerGivesUp(t *testing.T) {
	s := openStore(t, t.TempDir())
	quitter := connect(t, s, "quitter", "estateguru")
	keeper := connect(t, s, "keeper", "estateguru")
	release := holdGate(t, s.snapshots)
	ctx, cancel := context.WithCancel(context.Background())
	snap := portfolio(1, 500)
	rows := snap.Investments
	snap.Investments = func(yield func(Investment, error) bool) {
		i := 0
		for inv, err := range rows {
			if i++; i == 250 {
				cancel() // the caller gives up half-way through its rows
			}
			if !yield(inv, err) {
				return
			}
		}
	}
	quit, keep := batchBesideAQuitter(t, s, release, ctx, quitter, snap, keeper)
	if err := <-quit; !errors.Is(err, context.Canceled) {
		t.Errorf("the write given up: err = %v, want context.Canceled", err)
	}
	if err := <-keep; err != nil {
		t.Fatalf("the write committed beside it: %v", err)
	}
	var state string
	var n int
	s.snapshots.QueryRow("SELECT state FROM connection WHERE id = ?", keeper).Scan(&state)
	s.snapshots.QueryRow("SELECT count(*) FROM estateguru_investment WHERE connection_id = ?", quitter).Scan(&n)
	if state != StateReauthRequired || n != 0 {
		t.Fatalf("state %q and %d rows of the write given up; want %q and 0", state, n, StateReauthRequired)
	}
}

// A panic in a write reaches its own caller, after its savepoint is rolled
// back; the writes beside it are committed, and the database takes writes
// afterwards (the gate is not left held).
func TestGroupCommitPanicReachesItsCaller(t *testing.T) {
	s := openStore(t, t.TempDir())
	bad := connect(t, s, "bad", "estateguru")
	good := connect(t, s, "good", "estateguru")
	release := holdGate(t, s.snapshots)
	snap := portfolio(1, 10)
	snap.Investments = func(yield func(Investment, error) bool) {
		yield(Investment{LoanID: "EE1"}, nil)
		panic("decoder bug")
	}
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		s.SaveEstateGuru(context.Background(), bad, day0, day0, snap)
	}()
	waitQueued(t, s.snapshots, 1)
	ok := make(chan error, 1)
	go func() { ok <- s.SaveEstateGuru(context.Background(), good, day0, day0, portfolio(2, 3)) }()
	waitQueued(t, s.snapshots, 2)
	release()
	if p := <-recovered; p != "decoder bug" {
		t.Fatalf("the caller recovered %v, want its own panic", p)
	}
	if err := <-ok; err != nil {
		t.Fatalf("the write beside it: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.SetState(context.Background(), good, StateActive, "") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write after the panic never ran: the gate was left held")
	}
	var n int
	s.snapshots.QueryRow("SELECT count(*) FROM estateguru_investment WHERE connection_id = ?", bad).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows of the write that panicked, want 0", n)
	}
}

// The same with the caller giving up at any moment, in the middle of a
// statement too: SQLite would roll back the whole transaction on an
// interrupted statement, so a write in a batch is not interrupted.
func TestGroupCommitIsNotInterruptedInABatch(t *testing.T) {
	s := openStore(t, t.TempDir())
	quitter := connect(t, s, "quitter", "estateguru")
	keeper := connect(t, s, "keeper", "estateguru")
	release := holdGate(t, s.snapshots)
	ctx, cancel := context.WithCancel(context.Background())
	quit, keep := batchBesideAQuitter(t, s, release, ctx, quitter, portfolio(1, 100_000), keeper)
	time.AfterFunc(30*time.Millisecond, cancel)
	<-quit
	if err := <-keep; err != nil {
		t.Fatalf("the write committed beside the one given up: %v", err)
	}
}

// A large snapshot waits its turn with the others but is committed in a
// transaction of its own (writeAlone): the small writes queued before and
// after it still go together, and every one is stored.
func TestALargeSnapshotIsCommittedAlone(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	var ids []int64
	for i := range 5 {
		ids = append(ids, connect(t, s, fmt.Sprintf("eg-%d", i), "estateguru"))
	}
	large := portfolio(7, 3)
	large.Raw = bytes.Repeat([]byte(" "), aloneFrom) // a large answer, as far as its size goes
	before := s.snapshots.queue.commits.Load()
	release := holdGate(t, s.snapshots)
	var wg gosync.WaitGroup
	errs := make([]error, len(ids))
	queued := 0
	for i, id := range ids {
		snap := portfolio(int64(i+1), 2)
		if i == 2 {
			snap = large
		}
		wg.Go(func() { errs[i] = s.SaveEstateGuru(ctx, id, day0, day0, snap) })
		queued++
		waitQueued(t, s.snapshots, queued) // in this order
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := s.snapshots.queue.commits.Load() - before; got != 3 {
		t.Errorf("%d commits for two small writes, a large one and two small ones, want 3", got)
	}
	if got, want := dump(t, s.snapshots.DB, "SELECT count(*) FROM estateguru_snapshot"), "5|\n"; got != want {
		t.Errorf("snapshots stored: %q, want %q", got, want)
	}
}
