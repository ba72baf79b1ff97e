package store

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// drillKey holds who runs a drill: at most one at a time per cluster.
func (s *Store) drillKey() string { return s.prefix + "drill" }

// ClaimDrill records holder as the running drill under lease (it goes when
// the lease does, so a crashed drill frees the cluster). won is false, with
// the current holder, when another drill runs.
func (s *Store) ClaimDrill(ctx context.Context, holder string, lease LeaseID) (won bool, current string, err error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return false, "", err
	}
	defer cancel()
	k := s.drillKey()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, holder, clientv3.WithLease(clientv3.LeaseID(lease)))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return false, "", wrapErr(ctx, "claim drill", err)
	}
	if resp.Succeeded {
		return true, holder, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		return false, string(kvs[0].Value), nil
	}
	return false, "", nil
}

// ReleaseDrill removes holder's claim (a no-op if it is not the holder).
func (s *Store) ReleaseDrill(ctx context.Context, holder string) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k := s.drillKey()
	_, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", holder)).Then(clientv3.OpDelete(k)).Commit()
	return wrapErr(ctx, "release drill", err)
}
