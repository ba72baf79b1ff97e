package store

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/internal/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader election. These transactions are the safety core of holdfast: the
// leader key's mod revision is the fencing token of a term, and every change
// to the key states in its If clause which term (and which topology version)
// the caller decided on. A stale caller gets ok=false and nothing is written.
//
// After ErrUnavailable the outcome is unknown (the transaction may have been
// applied before the connection broke): read Leader before acting.

// Leader returns the leader of region, or nil when the key is absent.
// Revision is the key's mod revision and LeaseID the lease it is attached to.
func (s *Store) Leader(ctx context.Context, region string) (*cluster.Leader, error) {
	if err := validName(region); err != nil {
		return nil, fmt.Errorf("store: leader: region: %w", err)
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.leaderKey(region))
	if err != nil {
		return nil, wrapErr(ctx, "get leader of "+region, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return leaderFromKV(region, resp.Kvs[0])
}

func leaderFromKV(region string, kv *mvccpb.KeyValue) (*cluster.Leader, error) {
	l, err := decodeLeader(region, kv.Value)
	if err != nil {
		return nil, fmt.Errorf("store: %w: %w", ErrCorrupt, err)
	}
	l.Revision = kv.ModRevision
	if kv.Lease != 0 {
		l.LeaseID = kv.Lease
	}
	return &l, nil
}

// Campaign makes member the leader of region, in one transaction:
//
//	IF   leader/<region> does not exist
//	AND  topology's mod revision == topoRev (0: topology absent)
//	THEN put leader/<region> = {member, lease} attached to lease
//	AND  put topology = newTopo
//
// Writing the topology in the same transaction means the new term and the
// topology generation it was decided under can never be seen apart. On
// success the returned leader's Revision is the term's fencing token. When a
// compare failed, ok is false, err nil, and leader is the current leader
// (nil if the key is absent, i.e. the topology changed). An expired lease
// fails with ErrLeaseNotFound and writes nothing.
func (s *Store) Campaign(ctx context.Context, region, member string, lease LeaseID, topoRev int64, newTopo cluster.Topology) (bool, *cluster.Leader, error) {
	if err := validName(region); err != nil {
		return false, nil, fmt.Errorf("store: campaign: region: %w", err)
	}
	if err := validName(member); err != nil {
		return false, nil, fmt.Errorf("store: campaign: member: %w", err)
	}
	if lease == 0 {
		return false, nil, fmt.Errorf("store: campaign %s for %s: no lease: a leader key must be attached to a lease", region, member)
	}
	if topoRev < 0 {
		return false, nil, fmt.Errorf("store: campaign %s: topology revision %d is negative", region, topoRev)
	}
	leader := cluster.Leader{Region: region, Member: member, LeaseID: int64(lease)}
	lval, err := encode("leader", leader)
	if err != nil {
		return false, nil, err
	}
	tval, err := encode("topology", newTopo)
	if err != nil {
		return false, nil, err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, nil, err
	}
	defer cancel()
	lk, tk := s.leaderKey(region), s.topologyKey()
	resp, err := s.cli.Txn(ctx).
		If(
			clientv3.Compare(clientv3.CreateRevision(lk), "=", 0),
			clientv3.Compare(clientv3.ModRevision(tk), "=", topoRev),
		).
		Then(
			clientv3.OpPut(lk, lval, clientv3.WithLease(clientv3.LeaseID(lease))),
			clientv3.OpPut(tk, tval),
		).
		Else(clientv3.OpGet(lk)).
		Commit()
	if err != nil {
		return false, nil, wrapErr(ctx, fmt.Sprintf("campaign %s for %s", region, member), err)
	}
	if resp.Succeeded {
		leader.Revision = resp.Header.Revision
		s.log.Info("won leader key", "region", region, "member", member, "revision", leader.Revision, "generation", newTopo.Generation)
		return true, &leader, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return false, nil, nil
	}
	cur, err := leaderFromKV(region, kvs[0])
	if err != nil {
		return false, nil, err
	}
	return false, cur, nil
}

// ReleaseLeader gives up the leader key of region, but only if it is still
// the caller's term (mod revision == leaderRev): a member that lost its lease
// and whose successor already holds the key must not delete the successor's.
// On success rev is the revision of the delete, which members report as
// LeaderLostRev. ok is false (rev 0) when the key was not the caller's any more.
func (s *Store) ReleaseLeader(ctx context.Context, region string, leaderRev int64) (bool, int64, error) {
	if err := validName(region); err != nil {
		return false, 0, fmt.Errorf("store: release leader: region: %w", err)
	}
	if leaderRev <= 0 {
		// 0 would match an absent key and "succeed" without deleting anything.
		return false, 0, fmt.Errorf("store: release leader of %s: revision %d: want the mod revision of the caller's leader key", region, leaderRev)
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, 0, err
	}
	defer cancel()
	lk := s.leaderKey(region)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(lk), "=", leaderRev)).
		Then(clientv3.OpDelete(lk)).
		Commit()
	if err != nil {
		return false, 0, wrapErr(ctx, "release leader of "+region, err)
	}
	if !resp.Succeeded {
		return false, 0, nil
	}
	s.log.Info("released leader key", "region", region, "term", leaderRev, "revision", resp.Header.Revision)
	return true, resp.Header.Revision, nil
}

// Handover ends the caller's term and installs the topology that names the
// next primary, in one transaction:
//
//	IF   leader/<region> mod revision == leaderRev
//	AND  topology mod revision == topoRev
//	THEN delete leader/<region>
//	AND  put topology = newTopo
//
// so that no other member can campaign between the release and the topology
// change. rev is the revision of the transaction; ok false (rev 0) when either
// compare failed.
func (s *Store) Handover(ctx context.Context, region string, leaderRev, topoRev int64, newTopo cluster.Topology) (bool, int64, error) {
	if err := validName(region); err != nil {
		return false, 0, fmt.Errorf("store: handover: region: %w", err)
	}
	if leaderRev <= 0 {
		return false, 0, fmt.Errorf("store: handover of %s: leader revision %d: want the mod revision of the caller's leader key", region, leaderRev)
	}
	if topoRev < 0 {
		return false, 0, fmt.Errorf("store: handover of %s: topology revision %d is negative", region, topoRev)
	}
	tval, err := encode("topology", newTopo)
	if err != nil {
		return false, 0, err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, 0, err
	}
	defer cancel()
	lk, tk := s.leaderKey(region), s.topologyKey()
	resp, err := s.cli.Txn(ctx).
		If(
			clientv3.Compare(clientv3.ModRevision(lk), "=", leaderRev),
			clientv3.Compare(clientv3.ModRevision(tk), "=", topoRev),
		).
		Then(clientv3.OpDelete(lk), clientv3.OpPut(tk, tval)).
		Commit()
	if err != nil {
		return false, 0, wrapErr(ctx, "handover of "+region, err)
	}
	if !resp.Succeeded {
		return false, 0, nil
	}
	s.log.Info("handed over leader key", "region", region, "term", leaderRev, "revision", resp.Header.Revision, "generation", newTopo.Generation)
	return true, resp.Header.Revision, nil
}
