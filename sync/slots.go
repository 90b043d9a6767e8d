package sync

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// slots bound what a run does at once. network holds the connections
// talking to their providers (SYNCER_CONCURRENCY of them). A connection
// whose answer is in hand trades its network slot for a share of the save
// budget, so the next connection's requests go out while it waits for the
// store's single writer: with 100 portfolios of 1,000 investments the
// writes had kept the network idle for half the run.
//
// The save budget is in bytes of answers waiting to be stored: two large
// answers at a time (each counts as half the budget at most), which keep the
// writer busy (one writing, one ready) while more would only hold more
// decoded answers in memory; but many small ones, which the store commits
// together (group commit). With a fixed two slots, 10,000 small answers
// queued for them while holding their network slots.
type slots struct {
	network chan struct{}
	save    *semaphore.Weighted
	budget  int64
}

// saveBudget is the bytes of answers that may wait for the writer: a few
// hundred small ones (with 16 MiB, 10,000 connections peaked 8 MB higher,
// for no gain in time).
const saveBudget = 4 << 20

func newSlots(concurrency int) *slots {
	return newSlotsBudget(concurrency, saveBudget)
}

func newSlotsBudget(concurrency int, budget int64) *slots {
	return &slots{network: make(chan struct{}, concurrency), save: semaphore.NewWeighted(budget), budget: budget}
}

// saveWeight is an answer's share of the save budget: its size, at least
// 1 and at most half the budget.
func (s *slots) saveWeight(size int) int64 {
	return min(max(int64(size), 1), s.budget/2)
}

// turn is one connection's passage through the slots. Its network slot is
// taken before it starts (Run waits for it there, so a cancelled run starts
// no more connections).
func (s *slots) turn() *turn { return &turn{slots: s, network: true} }

type turn struct {
	slots   *slots
	network bool
	save    int64 // the save budget held: 0 when none
	// leaveHost, if set, is called as the network slot is first given
	// back: the connection no longer counts against its host's share
	// (hostqueue.go).
	leaveHost func()
}

// giveNetworkBack gives the network slot back for good (the connection is
// done with its provider, for now), and leaves its host's share.
func (t *turn) giveNetworkBack() {
	if t.leaveHost != nil {
		t.leaveHost()
		t.leaveHost = nil
	}
	<-t.slots.network
	t.network = false
}

// toSave waits for its share of the save budget for an answer of size
// bytes, holding the network slot meanwhile (no connection starts while the
// budget is spent), then gives the network slot back.
func (t *turn) toSave(ctx context.Context, size int) error {
	if t.save > 0 {
		return nil
	}
	w := t.slots.saveWeight(size)
	if err := t.slots.save.Acquire(ctx, w); err != nil {
		return err
	}
	t.save = w
	t.giveNetworkBack()
	return nil
}

// toNetwork is the way back, for a connection that must talk to its
// provider again (a retry after an error answer found while storing). It
// gives its save share back first and holds nothing while it waits for a
// network slot: holding the save share meanwhile could deadlock with
// connections that hold network slots and wait for a save share.
func (t *turn) toNetwork(ctx context.Context) error {
	if t.network {
		return nil
	}
	if t.save > 0 {
		t.slots.save.Release(t.save)
		t.save = 0
	}
	select {
	case t.slots.network <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.network = true
	return nil
}

// end gives back whatever slots the connection still holds.
func (t *turn) end() {
	switch {
	case t.network:
		t.giveNetworkBack()
	case t.leaveHost != nil:
		// Stepped aside and never came back (cancelled while waiting for
		// a slot): it no longer counts against its host either.
		t.leaveHost()
		t.leaveHost = nil
	}
	if t.save > 0 {
		t.slots.save.Release(t.save)
		t.save = 0
	}
}

// stepAside is a connection's provider.WaitHook: while its host's pacer
// holds it back for long (the host's rate-limit budget is spent), it gives
// its network slot to a connection of another host, and takes one again
// before its request leaves. It still counts against its host meanwhile,
// so the slot goes to another host's work. Without it, connections waiting
// for one host's window held every slot and the other hosts sat idle.
func (t *turn) stepAside(ctx context.Context) (resume func() error) {
	if !t.network {
		return func() error { return nil }
	}
	<-t.slots.network
	t.network = false
	return func() error {
		// A stopped run takes no slot: select would pick at random
		// between a free one and the stop.
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case t.slots.network <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.network = true
		return nil
	}
}
