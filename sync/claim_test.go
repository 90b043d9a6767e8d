package sync

import (
	"context"
	"errors"
	"fmt"
	stdsync "sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// claimingStore is a store shared with other instances (Claimer): it
// refuses the claim of the connections named in others, and records what
// was claimed and released.
type claimingStore struct {
	*store.Store
	others map[int64]bool
	valid  error // what Claim.Valid says

	mu       stdsync.Mutex
	claimed  []int64
	released map[int64]bool // connection: synced
	named    []bool
}

func (c *claimingStore) ClaimConnection(_ context.Context, connID int64, _ time.Time, anew bool) (Claim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.named = append(c.named, anew)
	if c.others[connID] && !anew {
		return nil, fmt.Errorf("%w: other:1 synced it in this period", ErrSkip)
	}
	c.claimed = append(c.claimed, connID)
	return &testClaim{s: c, id: connID}, nil
}

func (c *claimingStore) LockConnection(context.Context, int64, time.Duration) (func(), error) {
	return nil, errors.New("LockConnection called on a Claimer")
}

type testClaim struct {
	s  *claimingStore
	id int64
}

func (t *testClaim) Valid(context.Context) error { return t.s.valid }
func (t *testClaim) Release(synced bool) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.released[t.id] = synced
}

func TestClaimerSkipsAnotherInstancesConnections(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range []string{"a", "b"} {
		if _, err := st.Connect(ctx, name, estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "refresh-0"}); err != nil {
			t.Fatal(err)
		}
	}
	cs := &claimingStore{Store: st, others: map[int64]bool{2: true}, released: map[int64]bool{}}
	s := newTestSyncer(cs, &rotatingEstateGuru{valid: "refresh-0"}, &logBuffer{})
	sum, err := s.Run(ctx, TriggerSchedule, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.OK != 1 || sum.SkippedElsewhere != 1 || sum.Failed != 0 || sum.Status != store.RunOK {
		t.Fatalf("summary = %+v, want 1 ok, 1 skipped, status ok", sum)
	}
	if got := cs.released; len(got) != 1 || !got[1] {
		t.Fatalf("released = %v, want connection 1 released as synced", got)
	}
	// Nothing recorded for the skipped one: no result, no error on it.
	c, err := st.ConnectionByName(ctx, "b")
	if err != nil || c.LastError != "" || c.State != store.StateActive {
		t.Fatalf("skipped connection = %+v, %v; want untouched", c, err)
	}
	var n int
	db, _ := store.OpenReports(ctx, st.Dir())
	defer db.Close()
	if err := db.QueryRow("SELECT count(*) FROM sync_results WHERE connection = 'b'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d results recorded for the skipped connection (%v)", n, err)
	}

	// Named, it is claimed anew (and synced: here it fails, since the
	// fake provider's one valid token went to "a").
	if sum, err := s.Run(ctx, TriggerOnce, []string{"b"}); err != nil || sum.SkippedElsewhere != 0 {
		t.Fatalf("named run: %+v, %v; want nothing skipped", sum, err)
	}
	if got := cs.named[len(cs.named)-1]; !got || cs.claimed[len(cs.claimed)-1] != 2 {
		t.Fatalf("a named connection was not claimed anew (named %v, claimed %v)", cs.named, cs.claimed)
	}
}

func TestALapsedClaimRefreshesNothing(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Connect(ctx, "a", estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "refresh-0"}); err != nil {
		t.Fatal(err)
	}
	eg := &rotatingEstateGuru{valid: "refresh-0"}
	cs := &claimingStore{Store: st, released: map[int64]bool{}, valid: errors.New("claim lapsed")}
	s := newTestSyncer(cs, eg, &logBuffer{})
	sum, err := s.Run(ctx, TriggerSchedule, nil)
	if err != nil || sum.Failed != 1 {
		t.Fatalf("summary = %+v, %v; want the connection failed", sum, err)
	}
	eg.mu.Lock()
	defer eg.mu.Unlock()
	if eg.n != 0 {
		t.Fatalf("%d refreshes under a lapsed claim, want 0", eg.n)
	}
	if synced, ok := cs.released[1]; !ok || synced {
		t.Fatalf("released = %v, want released as not synced", cs.released)
	}
}

// TestClaimSkipsAndReauthSkipsAreCountedApart: a connection another
// instance synced in this period (SkippedElsewhere) is no failure and no
// result; one that needs re-login (Skipped) is recorded as skipped and makes
// the run partial, not failed, since the other connection is synced.
func TestClaimSkipsAndReauthSkipsAreCountedApart(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range []string{"a", "b"} {
		if _, err := st.Connect(ctx, name, estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "refresh-0"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetState(ctx, 2, store.StateReauthRequired, "refused"); err != nil {
		t.Fatal(err)
	}
	cs := &claimingStore{Store: st, others: map[int64]bool{1: true}, released: map[int64]bool{}}
	s := newTestSyncer(cs, &rotatingEstateGuru{valid: "refresh-0"}, &logBuffer{})
	sum, err := s.Run(ctx, TriggerSchedule, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.OK != 0 || sum.SkippedElsewhere != 1 || sum.Skipped != 1 || sum.NeedsReauth != 1 || sum.Status != store.RunPartial {
		t.Fatalf("summary = %+v, want 1 skipped elsewhere, 1 skipped (re-login), partial", sum)
	}
	if len(sum.Results) != 1 || sum.Results[0].Connection != "b" || sum.Results[0].Status != store.ResultSkipped {
		t.Fatalf("results = %+v, want only b, skipped", sum.Results)
	}
}
