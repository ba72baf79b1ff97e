package agent

import (
	"context"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/store"
)

// loop is the member loop: observe, decide, act, publish. It wakes on etcd
// watch updates, PostgreSQL exits, lease trouble and a safety-net ticker.
func (a *Agent) loop(ctx context.Context) error {
	snap, err := a.snapshot(ctx)
	if err != nil {
		return err
	}
	a.applySnapshot(snap)
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	updates := a.st.Watch(wctx, snap.Revision)

	if err := a.bootstrap(ctx); err != nil {
		return err
	}

	tick := time.NewTicker(a.cfg.Agent.LoopInterval.D())
	defer tick.Stop()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-updates:
			if !ok {
				return ctx.Err()
			}
			a.applyUpdate(u)
			// Drain what else arrived so one step sees it all.
			for more := true; more; {
				select {
				case u, ok := <-updates:
					if !ok {
						return ctx.Err()
					}
					a.applyUpdate(u)
				default:
					more = false
				}
			}
		case <-a.exitCh:
			a.exitCh = nil
			a.onPostgresExit(ctx)
		case <-a.lost:
			a.onLeaseLost(ctx)
		case <-a.wake:
		case <-tick.C:
		}
	}
}

func (a *Agent) snapshot(ctx context.Context) (store.Snapshot, error) {
	backoff := 100 * time.Millisecond
	for {
		snap, err := a.st.Snapshot(ctx)
		if err == nil {
			return snap, nil
		}
		a.log.Warn("cannot read cluster state; retrying", "err", err)
		select {
		case <-ctx.Done():
			return store.Snapshot{}, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (a *Agent) applySnapshot(s store.Snapshot) {
	a.topo, a.topoRev = s.Topology, s.TopologyRev
	a.members = map[string]cluster.Member{}
	for n, m := range s.Members {
		a.members[n] = m
	}
	a.leaders = map[string]cluster.Leader{}
	for r, l := range s.Leaders {
		a.leaders[r] = l
	}
	if l, ok := s.Leaders[a.region]; ok {
		l := l
		a.leader = &l
	} else {
		a.setLeaderless(s.Revision)
	}
}

func (a *Agent) setLeaderless(rev int64) {
	if a.leader != nil || a.lostAt.IsZero() {
		a.lostAt = time.Now()
	}
	a.leader = nil
	if rev > a.lostRev {
		a.lostRev = rev
	}
}

func (a *Agent) applyUpdate(u store.Update) {
	switch u.Kind {
	case store.Resync:
		if u.Snapshot != nil {
			a.applySnapshot(*u.Snapshot)
		}
	case store.MemberPut:
		if u.Member != nil {
			a.members[u.Name] = *u.Member
			// Adopt a later start of the leaderless period seen by a peer, so
			// that all candidates compare reports of the same period.
			if a.leader == nil && u.Member.LeaderLostRev > a.lostRev {
				a.lostRev = u.Member.LeaderLostRev
			}
		}
	case store.MemberDeleted:
		delete(a.members, u.Name)
	case store.LeaderPut:
		if u.Leader != nil {
			a.leaders[u.Name] = *u.Leader
		}
		if u.Name == a.region && u.Leader != nil {
			l := *u.Leader
			a.leader = &l
		}
	case store.LeaderDeleted:
		delete(a.leaders, u.Name)
		if u.Name == a.region {
			a.setLeaderless(u.Revision)
		}
	case store.TopologyPut:
		if u.Topology != nil {
			a.topo, a.topoRev = *u.Topology, u.TopologyRev
		}
	}
}

// step runs one observe-decide-act-publish round.
func (a *Agent) step(ctx context.Context) {
	local := a.observe(ctx)
	if a.leader == nil && a.pubLostRev != a.lostRev {
		if a.detachedRev != a.lostRev {
			// Whatever a.upstream says (an agent restarted under a running
			// replica does not know it): a receiver may be streaming.
			if !local.PGRunning || !local.InRecovery || a.detach(ctx) {
				a.detachedRev = a.lostRev
			}
			local = a.observe(ctx)
		}
		// Report our WAL position for this leaderless period before deciding:
		// the others wait for it. publish reports it only once it is final
		// (the receiver stopped) and read now, not kept from before.
		a.publish(ctx, local, true)
	}
	if a.standbyLeaderOrphaned(local) {
		// The primary region lost its leader: its old primary may be frozen
		// with walsenders still running, and WAL received from it now may
		// never be on the new primary's timeline (we could not follow it).
		// Stop streaming; the new primary is followed once elected.
		if a.detach(ctx) {
			a.log.Info("the primary region has no leader: stopped streaming from its old primary until a new one is elected")
		}
		local = a.observe(ctx)
	}
	lease, _ := a.currentLease()
	v := cluster.View{
		Now: time.Now(), Local: local, Topology: a.topo, TopologyRev: a.topoRev,
		Leader: a.leader, PrimaryLeader: a.primaryLeader(), Members: a.members, LostRev: a.lostRev, LostAt: a.lostAt,
		ReportTimeout: a.cfg.Failover.ReportTimeout.D(), MaxLag: int64(a.cfg.Failover.MaxLagOnSwitchover),
	}
	_ = lease
	p := cluster.Decide(v)
	if p.Action != a.lastPlan.Action || p.Target != a.lastPlan.Target {
		a.log.Info("plan", "action", p.Action.String(), "target", p.Target, "reason", p.Reason)
	}
	a.lastPlan = p
	if a.backoff.wait(p, time.Now()) > 0 {
		// The same plan failed several times in a row: it waits its turn
		// (the loop ticks, so the wait ends even with nothing changing).
		a.publish(ctx, local, false)
		return
	}
	err := a.execute(ctx, p)
	if ctx.Err() == nil {
		a.backoff.done(p, err, time.Now())
	}
	if err != nil {
		if ctx.Err() == nil {
			if w := a.backoff.wait(p, time.Now()); w > 0 {
				a.log.Error("action failed", "action", p.Action.String(), "err", err, "failures_in_a_row", a.backoff.fails, "next_attempt_in", w)
			} else {
				a.log.Error("action failed", "action", p.Action.String(), "err", err)
			}
			a.lastErr = err.Error()
		}
	} else if p.Action != cluster.ActNone {
		a.lastErr = ""
	}
	a.publish(ctx, a.observe(ctx), false)
}

// standbyLeaderOrphaned says whether we lead a standby region, stream from
// the primary region, and that region has no leader, outside a region
// switchover to our region (whose target must keep receiving the old
// primary's last WAL).
func (a *Agent) standbyLeaderOrphaned(local cluster.Local) bool {
	if a.leader == nil || a.leader.Member != a.me.Name || a.region == a.topo.PrimaryRegion || a.topo.PrimaryRegion == "" {
		return false
	}
	if sw := a.topo.Switchover; sw != nil && sw.Region == a.region {
		return false
	}
	return a.upstream != "" && a.primaryLeader() == nil && local.PGRunning && local.InRecovery
}

// observe reads the local PostgreSQL's state.
func (a *Agent) observe(ctx context.Context) cluster.Local {
	lease, _ := a.currentLease()
	if cluster.PromoteFailed(a.promoteFails) && time.Since(a.promoteFailedAt) > promoteRetryAfter {
		// Failures caused from outside (a kill or a pause during the
		// promotion) look the same as a member that cannot promote: after
		// a while it may stand again, or a cluster whose only candidate it
		// is would wait for good.
		a.log.Info("promotions failed earlier; standing in elections again", "failures", a.promoteFails, "last", a.promoteFailedAt)
		a.promoteFails = 0
	}
	l := cluster.Local{Name: a.me.Name, Region: a.region, LeaseID: int64(lease), LeaseValid: a.leaseValid(), HeadOfHistory: a.headOfHistory(), PromoteFailures: a.promoteFails}
	a.statusFresh = false
	if !a.pg.Running() {
		a.statusOK = time.Time{}
		return l
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	st, err := a.pg.Status(sctx)
	cancel()
	a.statusFresh = err == nil
	if err == nil {
		a.statusOK = time.Now()
		a.lastStatus = st
		a.standby = st.InRecovery
		if a.promoteFails > 0 && st.InRecovery && a.upstream != "" && st.WalReceiverStatus == "streaming" {
			// Following a leader again (rewound or copied as needed): a
			// later promotion starts from a clean slate.
			a.log.Info("streaming from a leader again: earlier failed promotions forgotten", "failures", a.promoteFails)
			a.promoteFails = 0
			l.PromoteFailures = 0
		}
	} else if !a.statusOK.IsZero() && time.Since(a.statusOK) > pgUnhealthyAfter {
		a.log.Warn("postgres is running but not answering", "err", err, "since", a.statusOK)
		return l
	} else if a.statusOK.IsZero() && a.standby {
		// A standby not consistent yet (see startAsStandby): it has no WAL
		// position to report, nor any other state worth publishing.
		return l
	}
	l.PGRunning = true
	l.InRecovery = a.standby
	// A standby without a WAL receiver reports the timeline of its last
	// restartpoint, which can lag: keep the highest seen since it started.
	if a.lastStatus.TimeLine > a.timelineSeen {
		a.timelineSeen = a.lastStatus.TimeLine
	}
	l.Timeline = a.timelineSeen
	l.LSN = a.lastStatus.CurrentLSN
	return l
}

// onPostgresExit handles a postmaster exit the agent did not ask for.
func (a *Agent) onPostgresExit(ctx context.Context) {
	if a.expectExit.Swap(false) {
		return
	}
	err := a.pg.ExitErr()
	wasPrimary := a.leading.Load() || !a.standby
	a.event(ctx, cluster.EventPostgresCrashed, "postgres exited unexpectedly (%v) while %s", err, map[bool]string{true: "primary", false: "replica"}[wasPrimary])
	if wasPrimary {
		// Its WAL may hold commits no replica received; it must rewind
		// before it can follow anyone.
		a.markRewind("postgres crashed while primary")
	}
	a.leading.Store(false)
	a.upstream = ""
}

// onLeaseLost takes a new lease after the old one expired; any key attached
// to the old one (the leader key included) is gone.
func (a *Agent) onLeaseLost(ctx context.Context) {
	id, until := a.currentLease()
	rctx, cancel := context.WithTimeout(ctx, a.cfg.Failover.RenewInterval.D())
	_, err := a.st.KeepAliveOnce(rctx, id)
	cancel()
	if err == nil && time.Now().Before(until) {
		return
	}
	a.fence(ctx, "lease lost")
	a.log.Warn("lease lost; taking a new one", "old", id)
	if err := a.grantLease(ctx); err != nil {
		return
	}
	a.published = cluster.Member{}
}

// detach stops our WAL receiver when the leader is lost, before we report our
// WAL position. The old primary may be alive without its agent (a frozen or
// partitioned agent cannot fence it, and a frozen postmaster leaves its
// backends and walsenders running): once every replica has detached it can
// get no synchronous confirmation, so no commit acknowledged after our report
// can exist, and the position we report is final. False: the receiver could
// not be seen stopped, and nothing may be reported yet.
func (a *Agent) detach(ctx context.Context) bool {
	if err := a.pg.WriteConfig(postgres.Settings{Standby: true, PrimarySlot: postgres.SlotName(a.me.Name)}); err != nil {
		a.log.Warn("detach from old primary", "err", err)
		return false
	}
	if err := a.pg.Reload(); err != nil {
		a.log.Warn("detach from old primary", "err", err)
		return false
	}
	a.upstream = ""
	start := time.Now()
	stopped := false
	for time.Since(start) < 2*time.Second {
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := a.pg.Status(sctx)
		cancel()
		if err == nil && st.WalReceiverStatus == "" {
			return true
		}
		// The reload stops the receiver only if the startup process was
		// streaming at that moment (see RestartWalReceiver): stop it.
		if err == nil && !stopped && time.Since(start) > 300*time.Millisecond {
			stopped = true
			if _, err := a.pg.RestartWalReceiver(ctx); err != nil {
				a.log.Warn("detach from old primary: stopping the WAL receiver", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	a.log.Warn("WAL receiver still running 2s after detaching; not reporting a WAL position until it has stopped")
	return false
}
