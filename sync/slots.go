package sync

import "context"

// slots bound what a run does at once. network holds the connections
// talking to their providers (SYNCER_CONCURRENCY of them). A connection
// whose answer is in hand trades its network slot for a save slot, so the
// next connection's requests go out while it waits for the store's single
// writer: with 100 portfolios of 1,000 investments the writes had kept the
// network idle for half the run. Two save slots keep the writer busy (one
// writing, one ready); more would only hold more decoded answers in memory.
type slots struct {
	network chan struct{}
	save    chan struct{}
}

func newSlots(concurrency int) *slots {
	return &slots{network: make(chan struct{}, concurrency), save: make(chan struct{}, 2)}
}

// turn is one connection's passage through the slots. Its network slot is
// taken before it starts (Run waits for it there, so a cancelled run starts
// no more connections).
func (s *slots) turn() *turn { return &turn{slots: s, network: true} }

type turn struct {
	slots         *slots
	network, save bool
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

// toSave waits for a save slot, holding the network slot meanwhile (no
// connection starts while two answers already wait), then gives the network
// slot back.
func (t *turn) toSave(ctx context.Context) error {
	if t.save {
		return nil
	}
	select {
	case t.slots.save <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.save = true
	t.giveNetworkBack()
	return nil
}

// toNetwork is the way back, for a connection that must talk to its
// provider again (a retry after an error answer found while storing). It
// gives its save slot back first and holds nothing while it waits for a
// network slot: holding the save slot meanwhile could deadlock with
// connections that hold network slots and wait for a save slot.
func (t *turn) toNetwork(ctx context.Context) error {
	if t.network {
		return nil
	}
	if t.save {
		<-t.slots.save
		t.save = false
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
	if t.save {
		<-t.slots.save
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
		select {
		case t.slots.network <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.network = true
		return nil
	}
}
