package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/store"
)

// Target is a member the proxy may connect to.
type Target struct {
	Name       string
	Addr       string
	Generation int64
}

// Router follows the cluster topology through an etcd watch and answers
// "where do writes go" and "which replicas may serve reads".
type Router struct {
	st     *store.Store
	region string
	maxLag time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	snap    store.Snapshot // guarded by mu
	changed chan struct{}  // guarded by mu; closed and replaced on every change
}

// NewRouter creates a router for the primary region.
func NewRouter(st *store.Store, region string, maxLag time.Duration, log *slog.Logger) *Router {
	return &Router{st: st, region: region, maxLag: maxLag, log: log, changed: make(chan struct{})}
}

// Run keeps the view current until ctx ends.
func (r *Router) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		snap, err := r.st.Snapshot(ctx)
		if err != nil {
			r.log.Warn("read topology", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		r.set(snap)
		for u := range r.st.Watch(ctx, snap.Revision) {
			r.apply(u)
		}
	}
}

func (r *Router) set(s store.Snapshot) {
	r.apply(store.Update{Kind: store.Resync, Snapshot: &s})
}

func (r *Router) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Router) apply(u store.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snap.Apply(u)
	r.notifyLocked()
}

// writerLocked is the member writes may go to: the holder of the region's
// leader key, if it reports itself a running primary of the current
// generation. Any doubt means no writer (invariant 2: hold, never guess).
func (r *Router) writerLocked() (Target, bool) {
	l, ok := r.snap.Leaders[r.region]
	if !ok {
		return Target{}, false
	}
	m, ok := r.snap.Members[l.Member]
	if !ok || m.Role != cluster.RolePrimary || m.State != cluster.StateRunning || m.Generation != r.snap.Topology.Generation {
		return Target{}, false
	}
	return Target{Name: m.Name, Addr: net.JoinHostPort(m.Host, fmt.Sprint(m.Port)), Generation: m.Generation}, true
}

// Writer returns the current writer, if any, and a channel closed at the
// next topology change.
func (r *Router) Writer() (Target, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.writerLocked()
	return t, ok, r.changed
}

// WaitWriter waits until a writer is known or ctx ends.
func (r *Router) WaitWriter(ctx context.Context) (Target, error) {
	for {
		t, ok, changed := r.Writer()
		if ok {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return Target{}, ctx.Err()
		case <-changed:
		}
	}
}

// Readers returns the replicas that may serve reads, streaming and within
// the lag bound, in name order.
func (r *Router) Readers() []Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.writerLocked()
	var primaryLSN cluster.LSN
	if ok {
		primaryLSN = r.snap.Members[w.Name].LSN
	}
	var out []Target
	for _, m := range r.snap.Members {
		if m.Region != r.region || m.Role != cluster.RoleReplica || m.State != cluster.StateRunning || !m.Streaming {
			continue
		}
		if ok && cluster.Lag(primaryLSN, m.LSN) > 16<<20 { // TODO(lag-time): replace with replay lag in time against r.maxLag
			continue
		}
		out = append(out, Target{Name: m.Name, Addr: net.JoinHostPort(m.Host, fmt.Sprint(m.Port)), Generation: m.Generation})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
