package sync

import (
	"context"
	"errors"
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
