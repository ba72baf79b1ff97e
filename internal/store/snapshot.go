package store

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/internal/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is the cluster state at one store revision.
type Snapshot struct {
	// Revision is the store revision the snapshot was read at; watch from
	// here to follow every later change.
	Revision    int64
	Topology    cluster.Topology
	TopologyRev int64                     // 0 when no topology exists
	Leaders     map[string]cluster.Leader // by region
	Members     map[string]cluster.Member // by name
	Initialize  string                    // member that claimed initialization, "" if none
	SystemID    string                    // recorded PostgreSQL system identifier, "" if none
}

// Snapshot reads members, leaders, topology and the initialize key at one
// revision. It is one read-only transaction of four ranges rather than one Get
// of the whole prefix: equally consistent, without reading the event log
// (up to MaxEvents values) every time a watcher resynchronises.
//
// An undecodable member or leader is logged and left out (a proxy then sees no
// leader and holds writes, the safe reading). An undecodable topology is
// ErrCorrupt: the desired state cannot be guessed.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix+membersDir, clientv3.WithPrefix()),
		clientv3.OpGet(s.prefix+leaderDir, clientv3.WithPrefix()),
		clientv3.OpGet(s.topologyKey()),
		clientv3.OpGet(s.initKey()),
	).Commit()
	if err != nil {
		return Snapshot{}, wrapErr(ctx, "snapshot", err)
	}
	if len(resp.Responses) != 4 {
		return Snapshot{}, fmt.Errorf("store: snapshot: %d responses to 4 reads", len(resp.Responses))
	}
	snap := Snapshot{
		Revision: resp.Header.Revision,
		Leaders:  map[string]cluster.Leader{},
		Members:  map[string]cluster.Member{},
	}
	for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
		if m, ok := s.memberFromKV(kv); ok {
			snap.Members[m.Name] = m
		}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		kind, region := parseKey(s.prefix, string(kv.Key))
		if kind != keyLeader {
			s.log.Warn("ignoring unexpected key", "key", string(kv.Key))
			continue
		}
		l, err := leaderFromKV(region, kv)
		if err != nil {
			s.log.Warn("skipping undecodable leader key", "key", string(kv.Key), "mod_revision", kv.ModRevision, "err", err)
			continue
		}
		snap.Leaders[region] = *l
	}
	if kvs := resp.Responses[2].GetResponseRange().GetKvs(); len(kvs) > 0 {
		t, err := decodeTopology(kvs[0].Value)
		if err != nil {
			return Snapshot{}, fmt.Errorf("store: snapshot: %w: %w", ErrCorrupt, err)
		}
		snap.Topology, snap.TopologyRev = t, kvs[0].ModRevision
	}
	if kvs := resp.Responses[3].GetResponseRange().GetKvs(); len(kvs) > 0 {
		v, err := decodeInit(kvs[0].Value)
		if err != nil {
			s.log.Warn("ignoring undecodable initialize key", "err", err)
		} else {
			snap.Initialize, snap.SystemID = v.Member, v.SystemID
		}
	}
	return snap, nil
}

// Apply folds a watch update into the snapshot, so that a watcher keeps a
// current view without reading the store again.
func (s *Snapshot) Apply(u Update) {
	if u.Kind == Resync && u.Snapshot != nil {
		*s = *u.Snapshot
	}
	if s.Members == nil {
		s.Members = map[string]cluster.Member{}
	}
	if s.Leaders == nil {
		s.Leaders = map[string]cluster.Leader{}
	}
	switch u.Kind {
	case MemberPut:
		if u.Member != nil {
			s.Members[u.Name] = *u.Member
		}
	case MemberDeleted:
		delete(s.Members, u.Name)
	case LeaderPut:
		if u.Leader != nil {
			s.Leaders[u.Name] = *u.Leader
		}
	case LeaderDeleted:
		delete(s.Leaders, u.Name)
	case TopologyPut:
		if u.Topology != nil {
			s.Topology, s.TopologyRev = *u.Topology, u.TopologyRev
		}
	}
	s.Revision = max(s.Revision, u.Revision)
}
