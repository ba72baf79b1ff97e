package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/store"
)

func (a *Agent) execute(ctx context.Context, p cluster.Plan) error {
	switch p.Action {
	case cluster.ActNone:
		if a.leader != nil && a.leader.Member == a.me.Name && a.leading.Load() {
			return a.maintainPrimary(ctx)
		}
		return nil
	case cluster.ActDemote:
		return a.demote(ctx, p.Reason)
	case cluster.ActRelease:
		return a.release(ctx, p.Reason)
	case cluster.ActReleaseStale:
		return a.release(ctx, p.Reason)
	case cluster.ActRestartPrimary:
		return a.restartPrimary(ctx)
	case cluster.ActFinishPromote:
		return a.promote(ctx)
	case cluster.ActPromote:
		return a.campaign(ctx, p.Reason)
	case cluster.ActFollow:
		if err := a.follow(ctx, p.Target); err != nil {
			return err
		}
		return a.maintainStandbyLeader(ctx)
	case cluster.ActLeadStandby:
		return a.leadStandby(ctx, p.Reason)
	case cluster.ActTakeRegion:
		return a.takeRegion(ctx, p.Reason)
	case cluster.ActStartStandby:
		return a.startStandby(ctx)
	case cluster.ActHandover:
		return a.handover(ctx, p.Target)
	case cluster.ActBlocked:
		if a.blockedRev != a.lostRev {
			a.blockedRev = a.lostRev
			a.event(ctx, cluster.EventFailoverBlocked, "automatic promotion refused: %s", p.Reason)
		}
		return nil
	default:
		panic(fmt.Sprintf("BUG: agent cannot execute %v", p))
	}
}

// stopPG stops PostgreSQL on purpose.
func (a *Agent) stopPG(ctx context.Context, mode postgres.StopMode) error {
	if !a.pg.Running() {
		return nil
	}
	a.expectExit.Store(true)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := a.pg.Stop(sctx, mode)
	a.upstream = ""
	return err
}

func (a *Agent) demote(ctx context.Context, why string) error {
	wasLeading := a.leading.Swap(false)
	if wasLeading || !a.standby {
		a.markRewind("demoted: " + why)
	}
	a.state = cluster.StateStopped
	if err := a.stopPG(ctx, postgres.StopFast); err != nil {
		return fmt.Errorf("demote: %w", err)
	}
	a.event(ctx, cluster.EventDemoted, "demoted: %s", why)
	return nil
}

// release gives up our leader key (the fast path after our PostgreSQL died,
// or a stale key of a previous incarnation). The topology stops naming us as
// primary in the same transaction, so nobody waits for us.
func (a *Agent) release(ctx context.Context, why string) error {
	a.leading.Store(false)
	if a.leader == nil {
		return nil
	}
	for attempt := 0; attempt < 5; attempt++ {
		t := a.topo
		if t.Primary == a.me.Name {
			t.Primary = ""
		}
		ok, rev, err := a.st.Handover(ctx, a.region, a.leader.Revision, a.topoRev, t)
		if err != nil {
			return fmt.Errorf("release leader key: %w", err)
		}
		if ok {
			a.setLeaderless(rev)
			a.event(ctx, cluster.EventLeaderReleased, "released the leader key: %s", why)
			return nil
		}
		if err := a.refresh(ctx); err != nil {
			return err
		}
		if a.leader == nil || a.leader.Member != a.me.Name {
			return nil
		}
	}
	return errors.New("release leader key: topology kept changing")
}

// refresh re-reads the cluster state after a failed compare.
func (a *Agent) refresh(ctx context.Context) error {
	snap, err := a.st.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("re-read cluster state: %w", err)
	}
	a.applySnapshot(snap)
	return nil
}

// primarySettings is the configuration of a primary: synchronous standbys
// chosen by the sync policy. inRecovery keeps standby.signal in place: it
// must exist until PostgreSQL's own promotion removes it (removing it under a
// standby makes promotion fail, and a standby restarted without it would end
// recovery without switching to a new timeline).
func (a *Agent) primarySettings(names []string, n int, inRecovery bool) postgres.Settings {
	return postgres.Settings{
		Standby:          inRecovery,
		SyncStandbyNames: postgres.SyncStandbyNamesAny(n, names),
	}
}

func (a *Agent) initialSync() ([]string, int) {
	// A new primary does not yet know which replicas are healthy: list them
	// all, so commits wait for one of them (quorum and relaxed alike; the
	// relaxed policy drops the requirement later if none connects).
	mode := a.topo.SyncMode
	if mode == "" {
		mode = a.cfg.Failover.SyncMode
	}
	if mode == cluster.SyncOff {
		return nil, 0
	}
	return a.others(), a.cfg.Failover.SyncCount
}

func (a *Agent) restartPrimary(ctx context.Context) error {
	names, n := a.initialSync()
	// Widen the recorded synchronous set first: every member listed in
	// synchronous_standby_names may confirm commits once PostgreSQL runs,
	// and an election must then read it (the set recorded before the crash
	// may hold fewer members).
	if union, ok := cluster.SyncRestart(a.topo.SyncSet, names); ok {
		if err := a.setSyncSet(ctx, union); err != nil {
			return fmt.Errorf("restart primary: %w", err)
		}
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("restart primary: %w", err)
	}
	// A member that crashed before its promotion completed is still a
	// standby on disk: restart it as one and promote it properly.
	inRecovery := cd.State == "in archive recovery" || cd.State == "shut down in recovery"
	if err := a.pg.WriteConfig(a.primarySettings(names, n, inRecovery)); err != nil {
		return err
	}
	a.leading.Store(true)
	a.state = cluster.StateStarting
	sctx, cancel := context.WithTimeout(ctx, a.cfg.Agent.StartTimeout.D())
	defer cancel()
	if err := a.startPG(sctx); err != nil {
		if inRecovery {
			a.promoteFailed(ctx, err)
		}
		return fmt.Errorf("restart primary: %w", err)
	}
	if inRecovery {
		a.standby = true
		a.event(ctx, cluster.EventPostgresRestarted, "restarted postgres (still a standby on disk): promoting")
		return a.promote(ctx)
	}
	a.standby = false
	a.syncList = names
	a.state = cluster.StateRunning
	a.repaired()
	a.recordPrimaryGeneration(a.topo.Generation)
	a.event(ctx, cluster.EventPostgresRestarted, "restarted postgres in place as primary")
	return nil
}

// campaign takes the leader key and, in the same transaction, the topology's
// next generation; then promotes.
func (a *Agent) campaign(ctx context.Context, why string) error {
	if !a.leaseValid() {
		return errors.New("campaign: lease not valid")
	}
	names, _ := a.initialSync()
	t := a.topo
	t.Cluster = a.cfg.Cluster
	if t.PrimaryRegion == "" {
		t.PrimaryRegion = a.cfg.PrimaryRegion
	}
	if t.SyncMode == "" {
		t.SyncMode, t.SyncCount = a.cfg.Failover.SyncMode, a.cfg.Failover.SyncCount
	}
	t.Primary = a.me.Name
	t.Generation++
	t.SyncSet = names
	t.Switchover, t.Failover = nil, nil
	lease, _ := a.currentLease()
	ok, leader, err := a.st.Campaign(ctx, a.region, a.me.Name, lease, a.topoRev, t)
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	if !ok {
		a.log.Info("lost the race for the leader key", "leader", leader)
		return a.refresh(ctx)
	}
	a.leader = leader
	a.topo = t
	if err := a.refresh(ctx); err != nil {
		a.log.Warn("re-read after campaign", "err", err)
	}
	a.leading.Store(true)
	a.generation = t.Generation
	a.log.Info("won the leader key", "generation", t.Generation, "reason", why)
	return a.promote(ctx)
}

// leadStandby takes our standby region's leader key without promoting. The
// topology is written back unchanged in the same transaction: if the
// primary region changed meanwhile (a region failover), the compare fails
// and nobody becomes a leader on a stale view.
func (a *Agent) leadStandby(ctx context.Context, why string) error {
	if !a.leaseValid() {
		return errors.New("lead standby region: lease not valid")
	}
	lease, _ := a.currentLease()
	ok, leader, err := a.st.Campaign(ctx, a.region, a.me.Name, lease, a.topoRev, a.topo)
	if err != nil {
		return fmt.Errorf("lead standby region: %w", err)
	}
	if !ok {
		a.log.Info("lost the race for the standby leader key", "leader", leader)
		return a.refresh(ctx)
	}
	a.leader = leader
	if err := a.refresh(ctx); err != nil {
		a.log.Warn("re-read after campaign", "err", err)
	}
	a.event(ctx, cluster.EventStandbyLeader, "standby leader of region %s (%s)", a.region, why)
	return a.maintainStandbyLeader(ctx)
}

// takeRegion makes our region the primary region, as the target of a
// region switchover that the old primary has handed over, then promotes.
// The compare-and-swap on the topology fails if anything moved meanwhile
// (the request expired and the old region elected a primary, say).
func (a *Agent) takeRegion(ctx context.Context, why string) error {
	names, _ := a.initialSync()
	t, rev, err := a.st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		sw := t.Switchover
		if sw == nil || !sw.HandedOver || sw.Region != a.region || sw.To != a.me.Name {
			return errors.New("the region switchover request changed")
		}
		t.PrimaryRegion, t.Primary = a.region, a.me.Name
		t.Generation++
		t.SyncSet = names
		t.Switchover, t.Failover = nil, nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("take region %s: %w", a.region, err)
	}
	a.topo, a.topoRev = t, rev
	a.event(ctx, cluster.EventRegionPromoted, "region %s is now the primary region (%s)", a.region, why)
	return a.promote(ctx)
}

// maintainStandbyLeader keeps, on a standby leader, the replication slots
// of the members cascading from it.
func (a *Agent) maintainStandbyLeader(ctx context.Context) error {
	if a.leader == nil || a.leader.Member != a.me.Name || a.region == a.topo.PrimaryRegion || !a.pg.Running() {
		return nil
	}
	if time.Since(a.lastMaint) < a.cfg.Agent.LoopInterval.D()/2 {
		return nil
	}
	a.lastMaint = time.Now()
	if err := a.pg.EnsureSlots(ctx, a.regionSlots()); err != nil {
		a.log.Warn("replication slots on the standby leader", "err", err)
	}
	return nil
}

// promote turns our standby into the primary. We hold the key.
func (a *Agent) promote(ctx context.Context) error {
	a.leading.Store(true)
	names, n := a.initialSync()
	// Every member listed in synchronous_standby_names may confirm commits
	// once we are promoted: the recorded set must name them first, or an
	// election after our death finds no member known to hold every commit
	// (a region failover leaves the set empty: the members of the new
	// primary region were never in it).
	if union, ok := cluster.SyncRestart(a.topo.SyncSet, names); ok {
		if err := a.setSyncSet(ctx, union); err != nil {
			return fmt.Errorf("promote: %w", err)
		}
	}
	// Slots first, while still a standby, so that replicas re-pointed at us
	// find them at once.
	if err := a.pg.EnsureSlots(ctx, a.peerSlots()); err != nil {
		a.log.Debug("slots on standby before promotion", "err", err)
	}
	if err := a.pg.WriteConfig(a.primarySettings(names, n, true)); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if err := a.pg.Reload(); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	start := time.Now()
	// The generation is ours from the moment we hold its key, before the
	// promotion: the election that gave it to us found every acknowledged
	// commit in our WAL, and nobody else can be promoted in it. Recorded
	// only once promoted, a kill halfway (PostgreSQL promoted, the agent
	// gone before it noted it) left the member marked for a rewind and no
	// member the head of the history: with the other members fenced and
	// marked too, each waited for a leader to rewind from, for good (a
	// chaos run's cluster, seed 1796683254971353050).
	a.recordPrimaryGeneration(a.topo.Generation)
	// A new incarnation begins in the same postmaster: publish reads its
	// first id, and must not take the one saved for this postmaster.
	a.xidKnown.Store(false)
	_ = os.Remove(a.incarnationFile())
	if err := a.pg.Promote(ctx); err != nil {
		a.promoteFailed(ctx, err)
		return fmt.Errorf("promote: %w", err)
	}
	a.promoteFails = 0
	a.standby = false
	a.syncList = names
	a.syncPending = nil
	a.upstream = ""
	a.state = cluster.StateRunning
	a.repaired()
	a.generation = a.topo.Generation
	if err := a.pg.EnsureSlots(ctx, a.peerSlots()); err != nil {
		a.log.Warn("create replication slots", "err", err)
	}
	a.publish(ctx, a.observe(ctx), true)
	a.event(ctx, cluster.EventPromoted, "promoted to primary in generation %d (promotion took %s)", a.topo.Generation, time.Since(start).Round(time.Millisecond))
	return nil
}

// promoteRetryAfter is how long after its last failed promotion a member
// whose promotions failed cluster.MaxPromoteFailures times in a row stands
// in elections again.
const promoteRetryAfter = 30 * time.Second

// promoteFailed counts a promotion that could not finish; the decision
// gives the leader key up once too many failed in a row.
func (a *Agent) promoteFailed(ctx context.Context, err error) {
	a.promoteFails++
	a.promoteFailedAt = time.Now()
	if cluster.PromoteFailed(a.promoteFails) {
		a.event(ctx, cluster.EventPromoteFailed, "promotion failed %d times in a row (last: %v): this member stands in no election for %s, or until it has followed a leader again", a.promoteFails, err, promoteRetryAfter)
	}
}

// startStandby runs PostgreSQL read-only with no upstream, so that the
// member can report its WAL position while there is no leader.
func (a *Agent) startStandby(ctx context.Context) error {
	if !a.pg.IsInitialized() || (a.needsRewind() && !a.headOfHistory()) {
		// A standby region's leader left with nothing usable (a copy that
		// failed halfway, a rewind whose source died) repairs itself from
		// the primary: the members cascading from it would otherwise wait
		// on it, and it on nobody, for good.
		if a.region != a.topo.PrimaryRegion && a.leader != nil && a.leader.Member == a.me.Name {
			if pl := a.primaryLeader(); pl != nil {
				a.log.Info("standby leader without usable data: repairing from the primary", "primary", pl.Member, "initialized", a.pg.IsInitialized(), "needs_rewind", a.needsRewind())
				return a.follow(ctx, pl.Member)
			}
		}
		// Nothing to report, or WAL that may not be trusted: wait for a leader.
		a.waitingFor("no usable data (initialized %v, needs rewind %v): waiting for a leader to copy or rewind from", a.pg.IsInitialized(), a.needsRewind())
		return nil
	}
	return a.startAsStandby(ctx, "")
}

func (a *Agent) startAsStandby(ctx context.Context, upstream string) error {
	if a.pg.Running() {
		// Started and still recovering, not consistent yet (observe reports
		// it down until it answers): nothing to start. A standby region's
		// leader in that state may be waiting for WAL from a member that is
		// no longer the primary (it failed over meanwhile): the WAL it
		// lacks comes from the primary only, so it is re-pointed there
		// (a reload: no connection needed). Otherwise it would wait for
		// good, and its region with it (seen: 8 minutes, "replication slot
		// does not exist" on the old primary, now a replica).
		if pl := a.primaryLeader(); pl != nil && a.leader != nil && a.leader.Member == a.me.Name && a.upstream != pl.Member {
			a.log.Info("standby leader still recovering, streaming from a member that is not the primary: following the primary", "upstream", a.upstream, "primary", pl.Member)
			return a.follow(ctx, pl.Member)
		}
		a.waitingFor("postgres is recovering and accepts no connections yet")
		return nil
	}
	s := postgres.Settings{Standby: true, PrimarySlot: postgres.SlotName(a.me.Name)}
	if upstream != "" {
		ci, err := a.connInfo(upstream, false)
		if err != nil {
			return err
		}
		s.PrimaryConnInfo = &ci
	}
	if wait := time.Until(a.startRetryAt); wait > 0 {
		a.waitingFor("postgres failed to start %d times in a row; next attempt in %s", a.startFailures, wait.Round(time.Millisecond))
		return nil
	}
	if err := a.pg.WriteConfig(s); err != nil {
		return err
	}
	a.state = cluster.StateStarting
	a.publish(ctx, a.observe(ctx), true)
	sctx, cancel := context.WithTimeout(ctx, min(a.cfg.Agent.StartTimeout.D(), standbyReadyWait))
	defer cancel()
	err := a.startPG(sctx)
	if errors.Is(err, postgres.ErrStartTimeout) && a.pg.Running() {
		// Not consistent yet: it replays, or waits for WAL from an upstream
		// that may be gone (frozen, failed over). Waiting here would leave
		// the member deaf to a new leader for the whole start timeout:
		// carry on, and re-point it or rewind it as the cluster moves.
		a.exitCh = a.pg.Exited()
		a.log.Info("postgres started but accepts no connections yet (recovery goes on); carrying on", "upstream", upstream, "waited", standbyReadyWait)
		err = nil
	}
	if err != nil {
		a.state = cluster.StateStopped
		// A start that fails at once (its exit wakes the loop) must not
		// be retried in a tight loop: back off up to 10 s.
		a.startFailures++
		a.startRetryAt = time.Now().Add(min(time.Duration(a.startFailures)*500*time.Millisecond, 10*time.Second))
		return fmt.Errorf("start standby: %w", err)
	}
	a.startFailures, a.startRetryAt = 0, time.Time{}
	a.standby = true
	a.upstream = upstream
	a.followSince = time.Now()
	a.state = cluster.StateRunning
	return nil
}

// handover carries out a planned switchover: stop accepting writes, let the
// target receive everything, and hand it the key through the topology.
func (a *Agent) handover(ctx context.Context, target string) error {
	a.event(ctx, cluster.EventSwitchoverStart, "switchover to %s: stopping writes", target)
	// A checkpoint now makes the shutdown checkpoint short.
	if err := a.pg.Checkpoint(ctx); err != nil {
		a.log.Warn("checkpoint before switchover", "err", err)
	}
	if a.topo.Switchover != nil {
		a.waitProxies(ctx, store.SwitchoverToken(a.topo.Switchover.RequestedAt))
	}
	a.leading.Store(false)
	a.markRewind("handed over to " + target)
	if err := a.stopPG(ctx, postgres.StopFast); err != nil {
		return fmt.Errorf("switchover: stop: %w", err)
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		t := a.topo
		sw := cluster.SwitchoverRequest{From: a.me.Name, RequestedAt: time.Now(), Deadline: time.Now().Add(a.cfg.Failover.SwitchoverTimeout.D())}
		if t.Switchover != nil {
			sw = *t.Switchover
		}
		sw.To = target
		// The target must have received the shutdown checkpoint record.
		sw.MinLSN = cd.CheckpointLSN + 1
		sw.HandedOver = true
		t.Switchover = &sw
		t.Failover = nil
		t.Primary = ""
		ok, rev, err := a.st.Handover(ctx, a.region, a.leader.Revision, a.topoRev, t)
		if err != nil {
			return fmt.Errorf("switchover: hand over: %w", err)
		}
		if ok {
			a.setLeaderless(rev)
			a.topo = t
			a.log.Info("handed over the leader key", "to", target, "min_lsn", sw.MinLSN)
			return nil
		}
		if err := a.refresh(ctx); err != nil {
			return err
		}
		if a.leader == nil || a.leader.Member != a.me.Name {
			return nil
		}
	}
	return errors.New("switchover: topology kept changing")
}

// waitProxies waits (bounded by proxy.drain_timeout and a margin) until
// every live proxy has acknowledged the switchover: it holds new
// transactions and the ones in flight have finished, so stopping the
// primary now costs clients no error. A proxy that does not answer in time
// is not waited for: its clients get retryable errors instead.
func (a *Agent) waitProxies(ctx context.Context, token string) {
	start := time.Now()
	deadline := start.Add(a.cfg.Proxy.DrainTimeout.D() + 2*time.Second)
	for {
		ps, err := a.st.Proxies(ctx)
		if err != nil {
			a.log.Warn("switchover: cannot list proxies; not waiting for them", "err", err)
			return
		}
		var waiting []string
		for _, p := range ps {
			if p.SwitchoverAck != token {
				waiting = append(waiting, p.ID)
			}
		}
		if len(waiting) == 0 {
			if len(ps) > 0 {
				a.log.Info("switchover: proxies hold new work and drained", "proxies", len(ps), "waited", time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if time.Now().After(deadline) {
			a.log.Warn("switchover: proxies did not acknowledge in time; going on", "proxies", waiting)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
