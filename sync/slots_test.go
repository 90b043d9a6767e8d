package sync

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// blockingSaveStore holds the first snapshot write until release is closed,
// as a long write by the store's single writer would.
type blockingSaveStore struct {
	*store.Store
	first   atomic.Bool
	release chan struct{}
}

func (b *blockingSaveStore) SaveEstateGuru(ctx context.Context, connID int64, period, fetchedAt time.Time, snap store.EstateGuruSnapshot) error {
	if !b.first.Swap(true) {
		<-b.release
	}
	return b.Store.SaveEstateGuru(ctx, connID, period, fetchedAt, snap)
}

// A connection waiting for the store does not hold up the network: with
// SYNCER_CONCURRENCY=1 and the first snapshot write stuck, the next
// connections still fetch (two answers may wait for the writer; the third
// fetch happens while both wait), and every connection is stored once the
// write goes through.
func TestAConnectionWaitingToSaveLetsTheNextOneFetch(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok := provider.Token{Access: "access", Refresh: "refresh", AccessExpiresAt: time.Now().Add(time.Hour)}
	for i := range 4 {
		if _, err := st.Connect(ctx, fmt.Sprintf("eg%d", i), estateguru.Name, "https://estateguru.invalid", tok); err != nil {
			t.Fatal(err)
		}
	}
	var fetches atomic.Int32
	eg := &fakeEstateGuru{investments: func(context.Context) (*estateguru.Answer, error) {
		fetches.Add(1)
		return sampleAnswer(), nil
	}}
	bs := &blockingSaveStore{Store: st, release: make(chan struct{})}
	s := newTestSyncer(bs, eg, &logBuffer{})
	s.Concurrency = 1

	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := s.Run(ctx, TriggerOnce, nil)
		done <- result{sum, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for fetches.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := fetches.Load()
	close(bs.release)
	if got < 3 {
		t.Fatalf("%d fetches while the first write was stuck, want 3: the waiting connection held the only network slot", got)
	}
	r := <-done
	if r.err != nil || r.sum.OK != 4 {
		t.Fatalf("run: %+v, %v; want 4 connections ok", r.sum, r.err)
	}
}

// refreshingEstateGuru answers its first portfolio request with an error
// answer (status 200, {"error": "invalid_token"}), as EstateGuru may for an
// access token it revoked, and a portfolio after a refresh.
type refreshingEstateGuru struct {
	refreshes, fetches atomic.Int32
}

func (f *refreshingEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	f.refreshes.Add(1)
	return provider.Token{Access: "access-2", Refresh: "refresh-2", AccessExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (f *refreshingEstateGuru) Fetch(context.Context, provider.Secret) (Snapshot, error) {
	if f.fetches.Add(1) == 1 {
		return answered(estateguru.NewAnswer([]byte(`{"error":"invalid_token","error_description":"Access token expired"}`), ""), nil)
	}
	return answered(estateguru.NewAnswer([]byte(`{"currency":"EUR","cash":"12.34","investments":[{"investment_amount":"5.00"}]}`), ""), nil)
}

// An error answer is found only as the answer is decoded, which happens
// while it is stored; it still gets the one refresh and retry a refused
// token gets, and the retried portfolio is stored.
func TestAnErrorAnswerMetWhileStoringIsRetriedAfterARefresh(t *testing.T) {
	st := newScheduleStore(t)
	eg := &refreshingEstateGuru{}
	s := newTestSyncer(st, eg, &logBuffer{})
	sum, err := s.Run(context.Background(), TriggerOnce, nil)
	if err != nil || sum.OK != 1 {
		t.Fatalf("run: %+v, %v; want the connection ok", sum, err)
	}
	if got, want := [2]int32{eg.refreshes.Load(), eg.fetches.Load()}, [2]int32{1, 2}; got != want {
		t.Fatalf("refreshes, fetches = %v, want %v", got, want)
	}
	db, err := store.OpenReports(context.Background(), st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cash, invested int64
	if err := db.QueryRow("SELECT cash_cents, investment_amount_cents FROM estateguru_portfolios").Scan(&cash, &invested); err != nil {
		t.Fatal(err)
	}
	if cash != 1234 || invested != 500 {
		t.Fatalf("stored cash %d, invested %d; want 1234, 500", cash, invested)
	}
}

// A connection that stepped aside and was cancelled before it got a slot
// back still leaves its host's count when its turn ends, and holds no slot.
func TestASteppedAsideTurnLeavesItsHostWhenCancelled(t *testing.T) {
	s := newSlots(1)
	s.network <- struct{}{} // Run takes the slot before the turn starts
	tr := s.turn()
	left := 0
	tr.leaveHost = func() { left++ }
	ctx, cancel := context.WithCancel(context.Background())
	resume := tr.stepAside(ctx)
	s.network <- struct{}{} // another host's connection takes the freed slot
	cancel()
	if err := resume(); err == nil {
		t.Fatal("resume took a slot another connection holds")
	}
	tr.end()
	if left != 1 {
		t.Fatalf("leaveHost called %d times, want 1: the host would count a connection that is gone", left)
	}
	if got := len(s.network); got != 1 {
		t.Fatalf("network slots held = %d, want 1 (the other connection's)", got)
	}
}

// The save budget lets many small answers wait for the writer (the store
// commits them together) but only two large ones (memory): a third large
// answer keeps its network slot until one of them is stored.
func TestSaveBudgetHoldsManySmallAnswersButTwoLargeOnes(t *testing.T) {
	ctx := context.Background()
	s := newSlotsBudget(100, 1<<20)
	var small []*turn
	for range 50 {
		tr := s.turn()
		s.network <- struct{}{}
		if err := tr.toSave(ctx, 14_000); err != nil {
			t.Fatal(err)
		}
		small = append(small, tr)
	}
	if got := len(s.network); got != 0 {
		t.Fatalf("%d network slots still held by small answers waiting to be stored, want 0", got)
	}
	for _, tr := range small {
		tr.end()
	}

	var large []*turn
	for range 2 {
		tr := s.turn()
		s.network <- struct{}{}
		if err := tr.toSave(ctx, 27<<20); err != nil {
			t.Fatal(err)
		}
		large = append(large, tr)
	}
	third := s.turn()
	s.network <- struct{}{}
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := third.toSave(waitCtx, 27<<20); err == nil {
		t.Fatal("a third large answer got into the save budget while two wait")
	}
	if !third.network {
		t.Fatal("the third large answer gave up its network slot without a save share")
	}
	large[0].end()
	if err := third.toSave(ctx, 27<<20); err != nil {
		t.Fatalf("after one large answer was stored: %v", err)
	}
	third.end()
	large[1].end()
}

// A connection that stepped aside (its host's budget was spent) takes no
// network slot again once the run is stopped, free slot or not.
func TestAStoppedRunTakesNoSlotBack(t *testing.T) {
	s := newSlots(2)
	s.network <- struct{}{} // the connection's slot, as Run takes it
	tr := s.turn()
	ctx, cancel := context.WithCancel(context.Background())
	resume := tr.stepAside(ctx)
	cancel()
	for i := range 50 { // select would pick at random between the free slot and the stop
		if err := resume(); err == nil {
			t.Fatalf("try %d: a stopped run took a network slot back", i)
		}
	}
	tr.end()
	if n := len(s.network); n != 0 {
		t.Fatalf("%d network slots held after the turn ended", n)
	}
}

// stopAtStart stops the run as it is recorded, before any connection.
type stopAtStart struct {
	*store.Store
	stop context.CancelFunc
}

func (s stopAtStart) StartRun(ctx context.Context, trigger string) (int64, error) {
	defer s.stop()
	return s.Store.StartRun(ctx, trigger)
}

// A run stopped before it starts a connection starts none (and records
// none as interrupted): with free slots, select would otherwise start some
// at random.
func TestAStoppedRunStartsNoConnection(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok := provider.Token{Access: "access", Refresh: "refresh", AccessExpiresAt: time.Now().Add(time.Hour)}
	for i := range 30 {
		if _, err := st.Connect(context.Background(), fmt.Sprintf("eg%d", i), estateguru.Name, "https://estateguru.invalid", tok); err != nil {
			t.Fatal(err)
		}
	}
	var fetches atomic.Int32
	eg := &fakeEstateGuru{investments: func(context.Context) (*estateguru.Answer, error) {
		fetches.Add(1)
		return sampleAnswer(), nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	s := newTestSyncer(stopAtStart{st, cancel}, eg, &logBuffer{})
	s.Concurrency = 64
	sum, err := s.Run(ctx, TriggerOnce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sum.Results); n != 0 || fetches.Load() != 0 {
		t.Fatalf("%d connections started (%d fetched) after the run was stopped, want none", n, fetches.Load())
	}
}
