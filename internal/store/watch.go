package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/wait"
)

// UpdateKind says what an Update reports.
type UpdateKind int

const (
	// MemberPut: a member published a report (Member set).
	MemberPut UpdateKind = iota + 1
	// MemberDeleted: a report vanished, usually by lease expiry (Member is
	// the last report when it could be decoded, else nil).
	MemberDeleted
	// LeaderPut: a region's leader key was created (Leader set, Revision is
	// the term's fencing token).
	LeaderPut
	// LeaderDeleted: a region's leader key was released, handed over or
	// expired (Leader is the previous holder when known, Revision of the
	// update is the deletion's revision).
	LeaderDeleted
	// TopologyPut: the desired state changed (Topology and TopologyRev set).
	TopologyPut
	// Resync: the watch was interrupted or something changed that has no
	// update of its own (initialize key, topology deleted). Snapshot is the
	// complete state at Revision; replace the whole view with it.
	Resync
)

func (k UpdateKind) String() string {
	switch k {
	case MemberPut:
		return "member-put"
	case MemberDeleted:
		return "member-deleted"
	case LeaderPut:
		return "leader-put"
	case LeaderDeleted:
		return "leader-deleted"
	case TopologyPut:
		return "topology-put"
	case Resync:
		return "resync"
	default:
		return fmt.Sprintf("UpdateKind(%d)", int(k))
	}
}

// Update is one change of cluster state, in store revision order.
type Update struct {
	Kind        UpdateKind
	Revision    int64
	Name        string // member name or region
	Member      *cluster.Member
	Leader      *cluster.Leader
	Topology    *cluster.Topology
	TopologyRev int64
	Snapshot    *Snapshot // Resync only
}

// Watch streams typed updates of members/, leader/ and topology from just
// after fromRev (usually Snapshot.Revision; 0 starts with a Resync).
//
// It never silently loses a change: when the watch fails (error, compaction,
// etcd's "no leader" for a partitioned member, channel closed) it reads a new
// Snapshot, sends it as a Resync update and continues from its revision,
// retrying with backoff for as long as ctx lives. A consumer that applies
// updates in order and replaces its view on Resync is always consistent with
// some revision of the store. Undecodable values are logged and skipped.
// The channel is closed when ctx ends or the Store is closed.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan Update {
	out := make(chan Update, 64)
	started := s.goWatch(ctx, func(ctx context.Context) {
		defer close(out)
		s.watch(ctx, fromRev, out)
	})
	if !started {
		close(out)
	}
	return out
}

func (s *Store) watch(ctx context.Context, rev int64, out chan<- Update) {
	send := func(u Update) bool {
		select {
		case out <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var bo backoff
	resync := rev <= 0
	for ctx.Err() == nil {
		if resync {
			snap, err := s.Snapshot(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("watch: resync failed, retrying", "err", err)
				if !wait.Sleep(ctx, bo.delay()) {
					return
				}
				continue
			}
			if !send(Update{Kind: Resync, Revision: snap.Revision, Snapshot: &snap}) {
				return
			}
			rev, resync = snap.Revision, false
			bo.reset()
		}

		var alive bool
		rev, alive = s.watchOnce(ctx, rev, send)
		if !alive {
			return
		}
		// Whatever ended the watch, the consumer may have missed something.
		resync = true
		if !wait.Sleep(ctx, bo.delay()) {
			return
		}
	}
}

// watchOnce runs one etcd watch from rev+1 until it fails or asks for a
// resync. It returns the revision of the last change delivered, and false when
// the consumer went away (ctx ended during a send).
func (s *Store) watchOnce(ctx context.Context, rev int64, send func(Update) bool) (int64, bool) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// One watch over the whole prefix rather than one per directory: a single
	// stream is delivered in revision order, so "leader deleted" and the
	// topology written in the same transaction cannot arrive swapped.
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("watch interrupted, resynchronising", "after_revision", rev, "compact_revision", resp.CompactRevision, "err", err)
			}
			return rev, true
		}
		for _, ev := range resp.Events {
			u, action := s.translate(ev)
			switch action {
			case skip:
			case deliver:
				if !send(u) {
					return rev, false
				}
			case needResync:
				s.log.Info("watch: change without an update kind, resynchronising", "key", string(ev.Kv.Key), "revision", ev.Kv.ModRevision)
				// The snapshot is read after this event, so it includes it.
				return ev.Kv.ModRevision, true
			}
			rev = ev.Kv.ModRevision
		}
	}
	if ctx.Err() == nil {
		s.log.Warn("watch channel closed, resynchronising", "after_revision", rev)
	}
	return rev, true
}

type watchAction int

const (
	skip watchAction = iota
	deliver
	needResync
)

// translate turns one etcd event into an Update.
func (s *Store) translate(ev *clientv3.Event) (Update, watchAction) {
	kv := ev.Kv
	kind, name := parseKey(s.prefix, string(kv.Key))
	u := Update{Revision: kv.ModRevision, Name: name}
	del := ev.Type == clientv3.EventTypeDelete
	switch kind {
	case keyMember:
		if del {
			u.Kind = MemberDeleted
			if ev.PrevKv != nil {
				if m, ok := s.memberFromKV(ev.PrevKv); ok {
					u.Member = &m
				}
			}
			return u, deliver
		}
		m, ok := s.memberFromKV(kv)
		if !ok {
			return u, skip
		}
		u.Kind, u.Member = MemberPut, &m
		return u, deliver
	case keyLeader:
		if del {
			u.Kind = LeaderDeleted
			if ev.PrevKv != nil {
				if l, err := leaderFromKV(name, ev.PrevKv); err == nil {
					u.Leader = l
				}
			}
			return u, deliver
		}
		l, err := leaderFromKV(name, kv)
		if err != nil {
			s.log.Warn("skipping undecodable leader key", "key", string(kv.Key), "mod_revision", kv.ModRevision, "err", err)
			return u, skip
		}
		u.Kind, u.Leader = LeaderPut, l
		return u, deliver
	case keyTopology:
		if del {
			// Nobody deletes the topology in normal operation; there is no
			// update for it, and a full snapshot says "absent" unambiguously.
			return u, needResync
		}
		t, err := decodeTopology(kv.Value)
		if err != nil {
			s.log.Warn("skipping undecodable topology", "mod_revision", kv.ModRevision, "err", err)
			return u, skip
		}
		u.Kind, u.Topology, u.TopologyRev = TopologyPut, &t, kv.ModRevision
		return u, deliver
	case keyInitialize:
		// Rare (claim, system id) and needed by agents waiting to bootstrap.
		return u, needResync
	default:
		// events/ and foreign keys: not cluster state.
		return u, skip
	}
}
