package sync

import (
	"net/url"
	stdsync "sync"

	"github.com/syncerhq/syncer/store"
)

// hostQueues holds a run's connections in one queue per provider host
// (each EverReal tenant's subdomain is a host of its own; every EstateGuru
// connection shares one), and serves them side by side: each free slot goes
// to the host with the fewest connections under way, ties in turn. A host
// that is slow or rate limited (its connections wait on its pacer) then
// holds at most its share of the slots, and the other hosts' connections
// use the rest; taken in name order, one host's connections had filled
// every slot while the others waited.
type hostQueues struct {
	mu    stdsync.Mutex
	hosts []*hostQueue // in the order of their first connection
	next  int          // where the search for a tie starts
	left  int
}

type hostQueue struct {
	conns    []store.Connection
	underway int
}

func newHostQueues(conns []store.Connection) *hostQueues {
	q := &hostQueues{}
	byHost := map[string]*hostQueue{}
	for _, c := range conns {
		h := hostOf(c)
		hq, ok := byHost[h]
		if !ok {
			hq = &hostQueue{}
			byHost[h] = hq
			q.hosts = append(q.hosts, hq)
		}
		hq.conns = append(hq.conns, c)
		q.left++
	}
	return q
}

// hostOf is the host a connection's requests go to: its provider and its
// base URL's host.
func hostOf(c store.Connection) string {
	host := c.BaseURL
	if u, err := url.Parse(c.BaseURL); err == nil && u.Host != "" {
		host = u.Host
	}
	return c.Provider + " " + host
}

// take returns the next connection to start, and the function to call when
// it is done with its provider; ok is false when every queue is empty.
func (q *hostQueues) take() (c store.Connection, done func(), ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.left == 0 {
		return c, nil, false
	}
	var best *hostQueue
	bestAt := 0
	for i := range q.hosts {
		at := (q.next + i) % len(q.hosts)
		hq := q.hosts[at]
		if len(hq.conns) > 0 && (best == nil || hq.underway < best.underway) {
			best, bestAt = hq, at
		}
	}
	q.next = (bestAt + 1) % len(q.hosts)
	c = best.conns[0]
	best.conns[0] = store.Connection{}
	best.conns = best.conns[1:]
	best.underway++
	q.left--
	var once stdsync.Once
	return c, func() {
		once.Do(func() {
			q.mu.Lock()
			best.underway--
			q.mu.Unlock()
		})
	}, true
}
