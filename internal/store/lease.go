package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseID identifies an etcd lease. Each agent holds one; its member key and,
// while it leads, its region's leader key are attached to it, so both vanish
// when the agent stops renewing.
type LeaseID int64

// GrantLease grants a lease of at least ttl (rounded up to whole seconds).
// etcd raises TTLs below its minimum (1.5 election timeouts); use
// GrantLeaseTTL to learn the TTL actually granted.
func (s *Store) GrantLease(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	id, _, err := s.GrantLeaseTTL(ctx, ttl)
	return id, err
}

// GrantLeaseTTL is GrantLease that also returns the TTL etcd granted. An agent
// must time its self-demotion from the granted TTL, not the requested one.
func (s *Store) GrantLeaseTTL(ctx context.Context, ttl time.Duration) (LeaseID, time.Duration, error) {
	if ttl <= 0 {
		return 0, 0, fmt.Errorf("store: grant lease: ttl %s must be positive", ttl)
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cancel()
	resp, err := s.cli.Grant(ctx, secs)
	if err != nil {
		return 0, 0, wrapErr(ctx, "grant lease", err)
	}
	granted := time.Duration(resp.TTL) * time.Second
	if resp.TTL != secs {
		s.log.Warn("etcd granted a different lease ttl", "requested", ttl, "granted", granted)
	}
	return LeaseID(resp.ID), granted, nil
}

// KeepAliveOnce renews the lease once and returns its new remaining TTL. It
// returns ErrLeaseNotFound when the lease has expired or was revoked.
//
// The agent calls this on its own schedule, rather than using the client's
// background keep-alive, so that it knows exactly when it last renewed and
// can demote itself before the lease can have expired.
func (s *Store) KeepAliveOnce(ctx context.Context, id LeaseID) (time.Duration, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, wrapErr(ctx, fmt.Sprintf("renew lease %x", int64(id)), err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// RevokeLease revokes the lease, deleting every key attached to it at once
// (the agent's fast path on shutdown). Revoking a lease that is already gone
// is not an error: the keys are gone either way.
func (s *Store) RevokeLease(ctx context.Context, id LeaseID) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.cli.Revoke(ctx, clientv3.LeaseID(id)); err != nil {
		err = wrapErr(ctx, fmt.Sprintf("revoke lease %x", int64(id)), err)
		if errors.Is(err, ErrLeaseNotFound) {
			return nil
		}
		return err
	}
	return nil
}
