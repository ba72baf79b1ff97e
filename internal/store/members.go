package store

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/internal/cluster"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutMember publishes m under members/<m.Name>, attached to lease so that the
// report disappears when the agent dies. m.LeaseID is set to lease. A lease is
// required: a report without one would outlive its agent and look alive.
//
// A primary's report also records, in the same transaction and without a
// lease, the region's last known primary position (last-primary/<region>):
// it survives the loss of the whole region, so that a region failover can
// tell how much the old primary may have had that its successor lacks.
func (s *Store) PutMember(ctx context.Context, m cluster.Member, lease LeaseID) error {
	if err := validName(m.Name); err != nil {
		return fmt.Errorf("store: put member: %w", err)
	}
	if lease == 0 {
		return fmt.Errorf("store: put member %s: no lease: member reports must be attached to the agent's lease", m.Name)
	}
	m.LeaseID = int64(lease)
	val, err := encode("member", m)
	if err != nil {
		return err
	}
	if m.Role != cluster.RolePrimary || validName(m.Region) != nil {
		return s.putLeased(ctx, s.memberKey(m.Name), val, lease, "put member "+m.Name)
	}
	last, err := encode("last primary", cluster.LastPrimary{Member: m.Name, Timeline: m.Timeline, LSN: m.LSN, At: m.UpdatedAt})
	if err != nil {
		return err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.cli.Txn(ctx).Then(
		clientv3.OpPut(s.memberKey(m.Name), val, clientv3.WithLease(clientv3.LeaseID(lease))),
		clientv3.OpPut(s.lastPrimaryKey(m.Region), last),
	).Commit()
	return wrapErr(ctx, "put member "+m.Name, err)
}

// LastPrimary reads region's last known primary position; ok is false when
// no primary of the region has ever reported.
func (s *Store) LastPrimary(ctx context.Context, region string) (lp cluster.LastPrimary, ok bool, err error) {
	if err := validName(region); err != nil {
		return lp, false, fmt.Errorf("store: last primary: %w", err)
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return lp, false, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.lastPrimaryKey(region))
	if err != nil {
		return lp, false, wrapErr(ctx, "get last primary of "+region, err)
	}
	if len(resp.Kvs) == 0 {
		return lp, false, nil
	}
	if err := unmarshalObject(resp.Kvs[0].Value, &lp); err != nil {
		return lp, false, fmt.Errorf("store: last primary of %s: %w", region, err)
	}
	return lp, true, nil
}

// DeleteMember removes a member's report (deleting an absent one is not an error).
func (s *Store) DeleteMember(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("store: delete member: %w", err)
	}
	return s.deleteKey(ctx, s.memberKey(name), "delete member "+name)
}

// putLeased writes val at key, attached to lease: it disappears with its
// owner.
func (s *Store) putLeased(ctx context.Context, key, val string, lease LeaseID, op string) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.cli.Put(ctx, key, val, clientv3.WithLease(clientv3.LeaseID(lease))); err != nil {
		return wrapErr(ctx, op, err)
	}
	return nil
}

// deleteKey removes key (an absent one is not an error).
func (s *Store) deleteKey(ctx context.Context, key, op string) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.cli.Delete(ctx, key); err != nil {
		return wrapErr(ctx, op, err)
	}
	return nil
}

// Members returns the live members' reports by name. Undecodable reports are
// logged and left out: one bad value must not blind every agent.
func (s *Store) Members(ctx context.Context) (map[string]cluster.Member, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+membersDir, clientv3.WithPrefix())
	if err != nil {
		return nil, wrapErr(ctx, "get members", err)
	}
	out := make(map[string]cluster.Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m, ok := s.memberFromKV(kv); ok {
			out[m.Name] = m
		}
	}
	return out, nil
}

// memberFromKV decodes a members/ key, logging what it cannot use.
func (s *Store) memberFromKV(kv *mvccpb.KeyValue) (cluster.Member, bool) {
	kind, name := parseKey(s.prefix, string(kv.Key))
	if kind != keyMember {
		s.log.Warn("ignoring unexpected key", "key", string(kv.Key))
		return cluster.Member{}, false
	}
	m, err := decodeMember(name, kv.Value)
	if err != nil {
		s.log.Warn("skipping undecodable member report", "key", string(kv.Key), "mod_revision", kv.ModRevision, "err", err)
		return cluster.Member{}, false
	}
	if kv.Lease != 0 {
		// The lease the key is actually attached to is the truth.
		m.LeaseID = kv.Lease
	}
	return m, true
}
