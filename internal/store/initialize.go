package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bootstrap: exactly one member may run initdb for a new cluster. The
// initialize key records who won that right and, once initdb has run, the
// PostgreSQL system identifier it produced, which every other member checks its
// data directory against before joining.

// ClaimInitialize tries to claim the right to run initdb for member. won is
// true when member holds the claim, including when it claimed it in an
// earlier run (an agent restarted mid-bootstrap resumes rather than waits
// forever for itself); holder is whoever holds it.
func (s *Store) ClaimInitialize(ctx context.Context, member string) (bool, string, error) {
	if err := validName(member); err != nil {
		return false, "", fmt.Errorf("store: claim initialize: %w", err)
	}
	val, err := encode("initialize", initValue{Member: member})
	if err != nil {
		return false, "", err
	}
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, "", err
	}
	defer cancel()
	ik := s.initKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ik), "=", 0)).
		Then(clientv3.OpPut(ik, val)).
		Else(clientv3.OpGet(ik)).
		Commit()
	if err != nil {
		return false, "", wrapErr(ctx, "claim initialize for "+member, err)
	}
	if resp.Succeeded {
		s.log.Info("claimed initialize", "member", member)
		return true, member, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		// The compare and the get see the same revision, so this means
		// something other than a missing key failed the compare.
		return false, "", fmt.Errorf("store: claim initialize: compare failed but key absent")
	}
	v, err := decodeInit(kvs[0].Value)
	if err != nil {
		return false, "", fmt.Errorf("store: claim initialize: %w: %w", ErrCorrupt, err)
	}
	return v.Member == member, v.Member, nil
}

// SetSystemID records the PostgreSQL system identifier of the initialised
// cluster. Recording the same id again is a no-op; a different one fails with
// ErrSystemIDMismatch, because it means a second initdb ran somewhere.
func (s *Store) SetSystemID(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("store: set system id: id is empty")
	}
	ik := s.initKey()
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		v, rev, err := s.getInit(ctx)
		if err != nil {
			return err
		}
		if rev == 0 {
			return fmt.Errorf("store: set system id %s: %w", id, ErrNotInitialized)
		}
		switch v.SystemID {
		case id:
			return nil
		case "":
		default:
			return fmt.Errorf("store: set system id %s: %w: %s (initialized by %s)", id, ErrSystemIDMismatch, v.SystemID, v.Member)
		}
		v.SystemID = id
		val, err := encode("initialize", v)
		if err != nil {
			return err
		}
		cctx, cancel, err := s.call(ctx)
		if err != nil {
			return err
		}
		resp, err := s.cli.Txn(cctx).
			If(clientv3.Compare(clientv3.ModRevision(ik), "=", rev)).
			Then(clientv3.OpPut(ik, val)).
			Commit()
		err = wrapErr(cctx, "set system id", err)
		cancel()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			s.log.Info("recorded system id", "system_id", id, "member", v.Member)
			return nil
		}
	}
	return fmt.Errorf("store: set system id: initialize key changed concurrently %d times", maxCASAttempts)
}

// Initialize returns who claimed initialization and the recorded system id;
// both are empty when nobody has claimed it yet.
func (s *Store) Initialize(ctx context.Context) (holder, systemID string, err error) {
	v, _, err := s.getInit(ctx)
	if err != nil {
		return "", "", err
	}
	return v.Member, v.SystemID, nil
}

func (s *Store) getInit(ctx context.Context) (initValue, int64, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return initValue{}, 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.initKey())
	if err != nil {
		return initValue{}, 0, wrapErr(ctx, "get initialize", err)
	}
	if len(resp.Kvs) == 0 {
		return initValue{}, 0, nil
	}
	v, err := decodeInit(resp.Kvs[0].Value)
	if err != nil {
		return initValue{}, 0, fmt.Errorf("store: %w: %w", ErrCorrupt, err)
	}
	return v, resp.Kvs[0].ModRevision, nil
}
