package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
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
	// writerNow is writerLocked's answer, for lock-free checks.
	writerNow atomic.Pointer[Target]
	wal       walHistory // guarded by mu; the writer's recent WAL positions
	// serving is guarded by mu: whether each replica of the region
	// qualified at the last Readers call, so that only changes are logged.
	serving map[string]bool
}

// NewRouter creates a router for the primary region.
func NewRouter(st *store.Store, region string, maxLag time.Duration, log *slog.Logger) *Router {
	return &Router{st: st, region: region, maxLag: maxLag, log: log, changed: make(chan struct{})}
}

// Run keeps the view current until ctx ends.
func (r *Router) Run(ctx context.Context) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	pause := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		return true
	}
	for ctx.Err() == nil {
		snap, err := r.st.Snapshot(ctx)
		if err != nil {
			r.log.Warn("read topology", "err", err)
			if !pause() {
				return
			}
			continue
		}
		r.set(snap)
		watched := time.Now()
		for u := range r.st.Watch(ctx, snap.Revision) {
			r.apply(u)
		}
		// The watch retries by itself and ends only with ctx or the
		// store: one that ends at once (the store closing) must not be
		// re-read and re-watched in a tight loop.
		if time.Since(watched) > time.Minute {
			backoff = minBackoff
		}
		if !pause() {
			return
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
	if w, ok := writerOf(r.snap, r.region); ok {
		r.wal.record(w, time.Now(), r.maxLag+walHistoryKeep)
	}
	if t, ok := r.writerLocked(); ok {
		r.writerNow.Store(&t)
	} else {
		r.writerNow.Store(nil)
	}
	r.notifyLocked()
}

// writerOf is the member writes may go to: the holder of the region's
// leader key, if it reports itself a running primary of the current
// generation. Any doubt means no writer (invariant 2: hold, never guess).
func writerOf(snap store.Snapshot, region string) (cluster.Member, bool) {
	// The writer is in the primary region, which a region switchover or
	// failover moves; region (the proxy's own) serves reads.
	if snap.Topology.PrimaryRegion != "" {
		region = snap.Topology.PrimaryRegion
	}
	l, ok := snap.Leaders[region]
	if !ok {
		return cluster.Member{}, false
	}
	m, ok := snap.Members[l.Member]
	if !ok || m.Role != cluster.RolePrimary || m.State != cluster.StateRunning || m.Generation != snap.Topology.Generation {
		return cluster.Member{}, false
	}
	return m, true
}

func target(m cluster.Member) Target {
	return Target{Name: m.Name, Addr: net.JoinHostPort(m.Host, fmt.Sprint(m.Port)), Generation: m.Generation}
}

func (r *Router) writerLocked() (Target, bool) {
	m, ok := writerOf(r.snap, r.region)
	if !ok {
		return Target{}, false
	}
	return target(m), true
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

// Readers returns the replicas that may serve reads (see readersFrom), in
// name order.
func (r *Router) Readers() []Target {
	r.mu.Lock()
	defer r.mu.Unlock()
	out, refused := readersFrom(r.snap, r.region, r.wal, time.Now(), r.maxLag)
	r.logReadersLocked(refused)
	return out
}

// logReadersLocked logs replicas that start or stop serving reads. Readers
// runs for every reader connection, so only changes are logged.
func (r *Router) logReadersLocked(refused map[string]string) {
	if r.serving == nil {
		r.serving = map[string]bool{}
	}
	for name, why := range refused {
		was, seen := r.serving[name]
		switch {
		case why == "" && (!seen || !was):
			r.log.Info("replica serves reads", "member", name)
		case why != "" && (!seen || was):
			r.log.Info("replica serves no reads", "member", name, "reason", why)
		}
		r.serving[name] = why == ""
	}
	for name := range r.serving {
		if _, ok := refused[name]; !ok {
			delete(r.serving, name)
		}
	}
}

// Reader qualification.
//
// A replica serves reads when its own latest report says that it is a
// running replica of the region, streaming from the writer, no further
// behind in replay than maxLag (cluster.Member.ReplayLagMS), and that report
// is fresh (staleAfterIntervals). The replay lag says nothing of WAL the
// replica has not received: a replica whose WAL receiver is starved, or cut
// off from the primary (it reports "streaming" until wal_receiver_timeout),
// replays all it has and reports no lag. So, while the writer is known, a
// second guard compares positions: by the time of its report the replica
// must have received the WAL the writer had written maxLag earlier
// (walHistory). Both compare timestamps of different hosts and assume their
// clocks agree to well within maxLag and the loop interval (NTP).

// staleAfterIntervals: a member report older than this many of its agent's
// loop intervals does not qualify the member. Agents publish at least every
// two intervals (cluster.Member.LoopIntervalMS); the third absorbs a slow
// loop step, etcd latency and clock skew. It does not grow with maxLag:
// accepting stale data is not a reason to trust a silent agent for longer.
// With the defaults (1 s loop, 1 s max lag) a replica serving reads was
// within 1 s of the primary as of at most 3 s ago.
const staleAfterIntervals = 3

// maxLoopInterval bounds the loop interval taken from a report, which is
// untrusted input like everything in etcd.
const maxLoopInterval = time.Hour

// readersFrom picks the replicas of region that may serve reads at now, in
// name order, from the snapshot and the writer's WAL history. refused holds
// every replica of the region: "" for those picked, else why not.
func readersFrom(snap store.Snapshot, region string, wal walHistory, now time.Time, maxLag time.Duration) (out []Target, refused map[string]string) {
	w, haveWriter := writerOf(snap, region)
	// In a standby region, replicas cascade from the region's standby
	// leader, which streams from the writer.
	via := ""
	if l, ok := snap.Leaders[region]; ok && haveWriter && w.Region != region {
		via = l.Member
	}
	refused = map[string]string{}
	for _, m := range snap.Members {
		if m.Region != region || m.Role != cluster.RoleReplica {
			continue
		}
		why := refusal(m, now, maxLag)
		if why == "" && haveWriter {
			why = behindWriter(m, w, via, wal, maxLag)
		}
		refused[m.Name] = why
		if why == "" {
			out = append(out, target(m))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, refused
}

// refusal is why replica m's own report does not let it serve reads at
// now, or "" if it does: running, streaming, fresh and within maxLag.
func refusal(m cluster.Member, now time.Time, maxLag time.Duration) string {
	switch {
	case m.Role != cluster.RoleReplica:
		return fmt.Sprintf("role is %s", m.Role)
	case m.State != cluster.StateRunning:
		return fmt.Sprintf("state is %s", m.State)
	case !m.Streaming:
		return "not streaming"
	}
	if m.LoopIntervalMS <= 0 || m.LoopIntervalMS > maxLoopInterval.Milliseconds() {
		return "report has no usable loop interval (agent older than the proxy?)"
	}
	limit := staleAfterIntervals * time.Duration(m.LoopIntervalMS) * time.Millisecond
	switch age := now.Sub(m.UpdatedAt); {
	case age > limit:
		return fmt.Sprintf("last report is %s old (limit %s)", age.Round(time.Millisecond), limit)
	case age < -limit:
		return fmt.Sprintf("last report is dated %s ahead of this host's clock (limit %s)", (-age).Round(time.Millisecond), limit)
	}
	switch {
	case m.ReplayLagMS == nil:
		return "replay lag unknown"
	case *m.ReplayLagMS < 0:
		return fmt.Sprintf("invalid replay lag %d ms", *m.ReplayLagMS)
	case *m.ReplayLagMS > maxLag.Milliseconds():
		return fmt.Sprintf("replay lag %d ms exceeds %s", *m.ReplayLagMS, maxLag)
	}
	return ""
}

// behindWriter is why replica m is too far behind writer w in received WAL,
// or "". A replica following another member (a deposed primary, say) does
// not qualify either, except via: the standby leader of a standby region,
// which its region's other replicas follow.
func behindWriter(m, w cluster.Member, via string, wal walHistory, maxLag time.Duration) string {
	if m.Upstream != w.Name && (via == "" || m.Upstream != via) {
		return fmt.Sprintf("follows %q, not the writer %q", m.Upstream, w.Name)
	}
	// A replica still on an older timeline than the writer's has not
	// switched to it yet, or cannot (its WAL left that history, and its
	// WAL receiver shows "streaming" between failed attempts): its
	// positions are not comparable with the writer's.
	if m.Timeline > 0 && w.Timeline > 0 && m.Timeline < w.Timeline {
		return fmt.Sprintf("on timeline %d, the writer on %d", m.Timeline, w.Timeline)
	}
	if wal.writer != w.Name || wal.generation != w.Generation {
		return ""
	}
	// The writer had written lsn by then, and m had not received it by the
	// time it reported: its received WAL was more than maxLag behind.
	if lsn, ok := wal.reachedBy(m.UpdatedAt.Add(-maxLag)); ok && m.LSN < lsn {
		return fmt.Sprintf("had received up to %s at its last report, behind the %s the writer had %s before",
			m.LSN, lsn, maxLag)
	}
	return ""
}

// walHistoryKeep is how far back, beyond maxLag, the writer's positions are
// kept: past the freshness limit of any sensible loop interval. Reports
// older than that cannot qualify a replica anyway.
const walHistoryKeep = time.Minute

// walHistoryMax bounds the marks kept whatever their times (a writer
// publishing unusually often): the oldest go first, and a replica report
// older than every mark is then judged on its own report alone.
const walHistoryMax = 512

// walMark is the writer's WAL position as of one of its reports: it had
// written at least lsn by at (the report's UpdatedAt, the writer's clock).
type walMark struct {
	at  time.Time
	lsn cluster.LSN
}

// walHistory holds one writer's recent reports, oldest first.
type walHistory struct {
	writer     string
	generation int64
	marks      []walMark
}

// record adds writer report w, starting over for a new writer or
// generation, and drops marks older than keep (before now) except the
// newest of those.
func (h *walHistory) record(w cluster.Member, now time.Time, keep time.Duration) {
	if w.Name != h.writer || w.Generation != h.generation {
		*h = walHistory{writer: w.Name, generation: w.Generation}
	}
	if n := len(h.marks); n > 0 {
		last := h.marks[n-1]
		if !w.UpdatedAt.After(last.at) {
			return // the same report again (a resync), or an older one
		}
		if w.LSN < last.lsn {
			// A writer's position never moves back within a generation;
			// start over rather than reason from contradicting reports.
			h.marks = h.marks[:0]
		}
	}
	h.marks = append(h.marks, walMark{at: w.UpdatedAt, lsn: w.LSN})
	cutoff := now.Add(-keep)
	drop := 0
	for drop+1 < len(h.marks) && !h.marks[drop+1].at.After(cutoff) {
		drop++
	}
	drop = max(drop, len(h.marks)-walHistoryMax)
	if drop > 0 {
		h.marks = append(h.marks[:0], h.marks[drop:]...)
	}
}

// reachedBy returns the position the writer had reached by t according to
// its reports: that of the newest report made at or before t. ok is false
// when no report is that old.
func (h walHistory) reachedBy(t time.Time) (lsn cluster.LSN, ok bool) {
	i := sort.Search(len(h.marks), func(i int) bool { return h.marks[i].at.After(t) })
	if i == 0 {
		return 0, false
	}
	return h.marks[i-1].lsn, true
}

// Switchover returns the planned switchover under way, if any, and a
// channel closed at the next topology change.
func (r *Router) Switchover() (*cluster.SwitchoverRequest, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap.Topology.Switchover, r.changed
}

// stale reports whether t was the writer and another member is now: a
// server connection to t must not carry new work.
// incarnation is what member's latest report says of its server as a
// primary: its first transaction id and postmaster start (see
// cluster.Member.FirstXID); zeros when unknown.
func (r *Router) incarnation(member string) (firstXID uint64, startedUS int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.snap.Members[member]
	if !ok || m.Role != cluster.RolePrimary {
		return 0, 0
	}
	return m.FirstXID, m.PGStartedUS
}

// readerRecheck is how often a reader session, between transactions,
// checks that its replica still serves reads.
const readerRecheck = 250 * time.Millisecond

// servesReads says whether a reader session may stay on t: t is a replica
// that qualifies now (see readersFrom), or the writer (a fallback).
func (r *Router) servesReads(t Target) bool {
	if w := r.writerNow.Load(); w != nil && w.Name == t.Name && w.Addr == t.Addr {
		return true
	}
	for _, q := range r.Readers() {
		if q.Name == t.Name && q.Addr == t.Addr {
			return true
		}
	}
	return false
}

func (r *Router) stale(t Target) bool {
	w := r.writerNow.Load()
	return w != nil && (w.Name != t.Name || w.Addr != t.Addr)
}
