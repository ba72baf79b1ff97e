package store

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/internal/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxCASAttempts bounds the read-modify-write loops (UpdateTopology,
// SetSystemID). These keys change rarely (failover, switchover, sync set
// changes); losing this many races in a row means something writes in a loop.
const maxCASAttempts = 16

// Topology returns the desired state and its mod revision; rev is 0 (and t the
// zero value) when no topology has been written yet.
func (s *Store) Topology(ctx context.Context) (cluster.Topology, int64, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return cluster.Topology{}, 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.topologyKey())
	if err != nil {
		return cluster.Topology{}, 0, wrapErr(ctx, "get topology", err)
	}
	if len(resp.Kvs) == 0 {
		return cluster.Topology{}, 0, nil
	}
	kv := resp.Kvs[0]
	t, err := decodeTopology(kv.Value)
	if err != nil {
		return cluster.Topology{}, 0, fmt.Errorf("store: %w: %w", ErrCorrupt, err)
	}
	return t, kv.ModRevision, nil
}

// CASTopology writes t only if the topology's mod revision is still
// expectRev (0: only if absent). On success newRev is the new mod revision; on
// a failed compare ok is false and newRev is the current mod revision (0 if
// absent), so the caller can re-read and decide again.
func (s *Store) CASTopology(ctx context.Context, t cluster.Topology, expectRev int64) (bool, int64, error) {
	if expectRev < 0 {
		return false, 0, fmt.Errorf("store: cas topology: revision %d is negative", expectRev)
	}
	val, err := encode("topology", t)
	if err != nil {
		return false, 0, err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, 0, err
	}
	defer cancel()
	tk := s.topologyKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(tk), "=", expectRev)).
		Then(clientv3.OpPut(tk, val)).
		Else(clientv3.OpGet(tk, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return false, 0, wrapErr(ctx, "cas topology", err)
	}
	if resp.Succeeded {
		return true, resp.Header.Revision, nil
	}
	var cur int64
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		cur = kvs[0].ModRevision
	}
	return false, cur, nil
}

// UpdateTopology reads the topology, lets fn change it, and writes it back
// with compare-and-swap, starting over when another writer got there first.
// fn sees the zero Topology when none exists yet (the write then creates it).
// fn may run several times and must only depend on its argument; an error from
// fn aborts without writing and is returned as is. After too many lost races
// it returns ErrConflict.
func (s *Store) UpdateTopology(ctx context.Context, fn func(*cluster.Topology) error) (cluster.Topology, int64, error) {
	for attempt := 1; attempt <= maxCASAttempts; attempt++ {
		t, rev, err := s.Topology(ctx)
		if err != nil {
			return cluster.Topology{}, 0, err
		}
		if err := fn(&t); err != nil {
			return cluster.Topology{}, 0, err
		}
		ok, newRev, err := s.CASTopology(ctx, t, rev)
		if err != nil {
			return cluster.Topology{}, 0, err
		}
		if ok {
			return t, newRev, nil
		}
		s.log.Debug("topology changed during update, retrying", "attempt", attempt, "read_revision", rev, "current_revision", newRev)
	}
	return cluster.Topology{}, 0, fmt.Errorf("store: update topology: %w (%d attempts)", ErrConflict, maxCASAttempts)
}
