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

func conn(name, baseURL string) store.Connection {
	return store.Connection{Name: name, Provider: estateguru.Name, BaseURL: baseURL, State: store.StateActive}
}

// Connections are taken from their hosts in turn, not in name order.
func TestHostQueuesTakeHostsInTurn(t *testing.T) {
	q := newHostQueues([]store.Connection{
		conn("a1", "https://a.example"), conn("a2", "https://a.example"), conn("a3", "https://a.example"),
		conn("b1", "https://b.example"), conn("b2", "https://b.example"),
		conn("c1", "https://c.example"),
	})
	var got []string
	for {
		c, done, ok := q.take()
		if !ok {
			break
		}
		got = append(got, c.Name)
		done()
	}
	if got, want := fmt.Sprint(got), "[a1 b1 c1 a2 b2 a3]"; got != want {
		t.Fatalf("order = %s, want %s", got, want)
	}
}

// A host whose connections are still under way yields the next slot to a
// host with fewer.
func TestHostQueuesFavourTheLeastBusyHost(t *testing.T) {
	q := newHostQueues([]store.Connection{
		conn("a1", "https://a.example"), conn("a2", "https://a.example"), conn("a3", "https://a.example"),
		conn("b1", "https://b.example"), conn("b2", "https://b.example"), conn("b3", "https://b.example"),
	})
	a1, _, _ := q.take() // a1 under way, never done
	if a1.Name != "a1" {
		t.Fatalf("first = %s, want a1", a1.Name)
	}
	for _, want := range []string{"b1", "b2", "b3"} {
		c, done, _ := q.take()
		if c.Name != want {
			t.Fatalf("took %s, want %s (host a is busy)", c.Name, want)
		}
		done()
	}
	c, _, _ := q.take()
	if c.Name != "a2" {
		t.Fatalf("took %s, want a2 once b is empty", c.Name)
	}
}

// stuckEstateGuru counts its fetches and, with release set, answers none
// until release is closed.
type stuckEstateGuru struct {
	release <-chan struct{}
	fetches *atomic.Int32
}

func (f *stuckEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	return provider.Token{}, fmt.Errorf("fake: no refresh expected")
}

func (f *stuckEstateGuru) Fetch(ctx context.Context, _ provider.Secret) (Snapshot, error) {
	f.fetches.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return answered(sampleAnswer(), nil)
}

// A host that stops answering holds one slot; the other host's connections
// use the rest, though their names come after the stuck host's.
func TestAStuckHostLeavesTheOthersTheirSlots(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok := provider.Token{Access: "access", Refresh: "refresh", AccessExpiresAt: time.Now().Add(time.Hour)}
	for i := range 3 {
		if _, err := st.Connect(ctx, fmt.Sprintf("a-stuck-%d", i), estateguru.Name, "https://stuck.invalid", tok); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		if _, err := st.Connect(ctx, fmt.Sprintf("b-fine-%d", i), estateguru.Name, "https://fine.invalid", tok); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var stuckFetches, fineFetches atomic.Int32
	stuck := &stuckEstateGuru{release: release, fetches: &stuckFetches}
	fine := &stuckEstateGuru{fetches: &fineFetches}
	s := newTestSyncer(st, nil, &logBuffer{})
	s.Providers[estateguru.Name] = func(u string) Provider {
		if u == "https://stuck.invalid" {
			return stuck
		}
		return fine
	}
	s.Concurrency = 2
	done := make(chan Summary, 1)
	go func() {
		sum, _ := s.Run(ctx, TriggerOnce, nil)
		done <- sum
	}()
	deadline := time.Now().Add(10 * time.Second)
	for fineFetches.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gotFine := fineFetches.Load()
	close(release)
	if sum := <-done; sum.OK != 7 {
		t.Fatalf("run: %+v, want 7 connections ok", sum)
	}
	if gotFine != 4 {
		t.Fatalf("while one host was stuck: %d fetches from the other host, want all 4", gotFine)
	}
}
