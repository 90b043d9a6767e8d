package sync

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"syncer/store"
	"syncer/sync/estateguru"
	"syncer/sync/provider"
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
