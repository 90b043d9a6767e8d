package sync

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
)

// countingStore counts the write checks and fails them while failing is set.
type countingStore struct {
	*store.Store
	checks  int
	failing bool
}

func (c *countingStore) CheckWritable(context.Context) error {
	c.checks++
	if c.failing {
		return errors.New("disk is full")
	}
	return nil
}

// A passed write check holds for writableFor, so refreshing many
// connections at once syncs the disk once, not once each; a failed one
// holds for nothing.
func TestAPassedWriteCheckHoldsForASecond(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := &countingStore{}
	var w writeCheck
	for range 100 {
		if err := w.check(ctx, st, clock); err != nil {
			t.Fatal(err)
		}
	}
	if st.checks != 1 {
		t.Fatalf("%d checks for 100 refreshes within a second, want 1", st.checks)
	}
	now = now.Add(writableFor)
	st.failing = true
	for i := range 2 {
		if err := w.check(ctx, st, clock); err == nil {
			t.Fatalf("check %d passed on a vault that cannot be written", i)
		}
	}
	if st.checks != 3 {
		t.Fatalf("%d checks, want 3: one after the second passed, and again after a failure", st.checks)
	}
	st.failing = false
	if err := w.check(ctx, st, clock); err != nil || st.checks != 4 {
		t.Fatalf("after the vault recovered: %v, %d checks; want it checked again and passing", err, st.checks)
	}
}

// stalledCheckStore holds its first write check until release is closed,
// after saying it began (entered).
type stalledCheckStore struct {
	Store            // nil: only CheckWritable is called
	entered, release chan struct{}
	checks           atomic.Int32
}

func (s *stalledCheckStore) CheckWritable(context.Context) error {
	if s.checks.Add(1) == 1 {
		close(s.entered)
		<-s.release
	}
	return nil
}

// A token save that fails while a write check is under way (forget) wins
// over that check: the next refresh checks the vault again instead of
// trusting, for a second, a check that began before the failure. Refreshes
// would otherwise go on against a vault that cannot keep their tokens.
func TestAWriteCheckUnderWayWhenASaveFailsDoesNotCount(t *testing.T) {
	ctx := context.Background()
	st := &stalledCheckStore{entered: make(chan struct{}), release: make(chan struct{})}
	var w writeCheck
	done := make(chan error, 1)
	go func() { done <- w.check(ctx, st, time.Now) }()
	<-st.entered
	w.forget() // another connection's save failed meanwhile
	close(st.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := w.check(ctx, st, time.Now); err != nil {
		t.Fatal(err)
	}
	if n := st.checks.Load(); n != 2 {
		t.Fatalf("%d write checks, want 2: the check under way when a save failed let the next refresh skip its own", n)
	}
}
