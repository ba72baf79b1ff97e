package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/store"
)

// grantLease obtains a new lease, retrying until ctx ends.
func (a *Agent) grantLease(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		sent := time.Now()
		id, ttl, err := a.st.GrantLeaseTTL(ctx, a.cfg.Failover.LeaseTTL.D())
		if err == nil {
			a.leaseMu.Lock()
			a.lease, a.validUntil = id, sent.Add(ttl)
			a.leaseMu.Unlock()
			a.log.Info("lease granted", "lease", fmt.Sprintf("%x", int64(id)), "ttl", ttl)
			return nil
		}
		a.log.Warn("cannot get a lease; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (a *Agent) currentLease() (store.LeaseID, time.Time) {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	return a.lease, a.validUntil
}

// leaseValid reports whether the lease is certainly alive for at least the
// demote margin: validUntil is measured from when the renewal was sent, so
// it never overestimates the lease's life in etcd.
func (a *Agent) leaseValid() bool {
	_, until := a.currentLease()
	return cluster.LeaseValid(time.Now(), until, a.cfg.Failover.DemoteMargin.D())
}

// renewLoop renews the lease every renew_interval. A lease found gone is
// reported to the main loop, which takes a new one.
func (a *Agent) renewLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Failover.RenewInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id, until := a.currentLease()
		if time.Now().After(until) {
			// Expired while we could not renew (or were stopped): it is gone
			// in etcd too; do not pretend otherwise.
			a.signalLost()
			continue
		}
		// Give the renewal until the moment we would have to fence anyway:
		// aborting earlier only to retry would queue behind the same slow
		// etcd (fsync under I/O load can take longer than renew_interval).
		sent := time.Now()
		budget := time.Until(until) - a.cfg.Failover.DemoteMargin.D()
		if budget < 50*time.Millisecond {
			budget = 50 * time.Millisecond
		}
		rctx, cancel := context.WithTimeout(ctx, budget)
		ttl, err := a.st.KeepAliveOnce(rctx, id)
		cancel()
		if took := time.Since(sent); took > a.cfg.Failover.RenewInterval.D()/2 {
			a.log.Warn("slow lease renewal", "took", took, "ok", err == nil, "valid_for", time.Until(until))
		}
		switch {
		case err == nil:
			a.leaseMu.Lock()
			if a.lease == id {
				a.validUntil = sent.Add(ttl)
			}
			a.leaseMu.Unlock()
		case errors.Is(err, store.ErrLeaseNotFound):
			a.log.Warn("etcd no longer knows our lease", "lease", fmt.Sprintf("%x", int64(id)), "believed_valid_for", time.Until(until))
			a.signalLost()
		default:
			a.log.Warn("lease renewal failed", "err", err)
		}
	}
}

func (a *Agent) signalLost() {
	select {
	case a.lost <- struct{}{}:
	default:
	}
	a.poke()
}

// guardLoop fences PostgreSQL when the lease of a leading member could
// expire: invariant 1, a member accepts writes only while it holds the key.
// It runs apart from the main loop so that a slow action cannot delay it.
func (a *Agent) guardLoop(ctx context.Context) {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.leading.Load() && !a.leaseValid() {
			a.fence(ctx, "leader lease could not be renewed in time")
		}
	}
}

// fence stops PostgreSQL at once. It is safe to call from any goroutine.
func (a *Agent) fence(ctx context.Context, why string) {
	if !a.leading.CompareAndSwap(true, false) {
		return
	}
	_, until := a.currentLease()
	a.log.Warn("fencing: stopping postgres so it accepts no more writes", "reason", why, "lease_valid_until", until.Format(time.RFC3339Nano))
	a.markRewind("fenced: " + why)
	a.expectExit.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := a.pg.Stop(sctx, postgres.StopFast); err != nil {
		a.log.Error("fencing stop failed; stopping immediately", "err", err)
		ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer icancel()
		_ = a.pg.Stop(ictx, postgres.StopImmediate)
	}
	a.poke()
}
