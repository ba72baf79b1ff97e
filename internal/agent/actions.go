package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
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

// follow makes this member a streaming replica of leader.
func (a *Agent) follow(ctx context.Context, leader string) error {
	lm, ok := a.members[leader]
	// In a standby region the upstream may be the region's standby leader:
	// a running standby can serve base backups and stream to us.
	standbyLeader := ok && lm.Region == a.region && a.region != a.topo.PrimaryRegion && lm.Role == cluster.RoleReplica &&
		lm.State == cluster.StateRunning && a.leader != nil && a.leader.Member == leader
	if !standbyLeader && (!ok || lm.Role != cluster.RolePrimary || lm.State != cluster.StateRunning) {
		// The new leader has not finished promoting; a standby can already
		// stream from it (cascading), but copying data needs a primary.
		if !a.pg.IsInitialized() || a.needsRewind() {
			a.waitingFor("%s is not a running primary yet (role %s, state %s): nothing to copy or rewind from", leader, lm.Role, lm.State)
			return nil
		}
	}
	if standbyLeader && (!a.pg.IsInitialized() || a.needsRewind()) {
		// A copy of a standby leader still on an older timeline than the
		// primary's would inherit its trouble (it may never reach the
		// primary's timeline): copy once it is there.
		if pl := a.primaryLeader(); pl != nil {
			if pm, ok := a.members[pl.Member]; ok && lm.Timeline < pm.Timeline {
				a.waitingFor("standby leader %s is on timeline %d, the primary %s on %d: waiting before copying from it", leader, lm.Timeline, pl.Member, pm.Timeline)
				return nil
			}
		}
	}
	if !a.pg.IsInitialized() || a.needsRewind() {
		if wait := time.Until(a.repairRetryAt); wait > 0 {
			a.waitingFor("%d attempts to repair the data directory failed in a row; next in %s", a.repairFailures, wait.Round(time.Millisecond))
			return nil
		}
		var err error
		switch {
		case !a.pg.IsInitialized():
			err = a.cloneFrom(ctx, leader)
		case a.needsCopy():
			err = a.recopy(ctx, leader)
		default:
			err = a.rejoin(ctx, leader)
		}
		a.repairDone(err)
		return err
	}
	if !a.pg.Running() {
		err := a.startAsStandby(ctx, leader)
		if err == nil {
			return nil
		}
		// PostgreSQL's only word for it is its log: the data directory's
		// WAL left the upstream's history (a cascading member holding the
		// same diverged tail as its standby leader had).
		if offHistory(err) {
			why := fmt.Sprintf("postgres cannot start on %s's timeline %d: its WAL left that history", leader, lm.Timeline)
			if time.Since(a.rewoundAt) < time.Minute {
				// A rewind just now found nothing to do, and did not help:
				// take a fresh copy (the data stays until it is complete).
				a.event(ctx, cluster.EventRewind, "%s, even after pg_rewind: taking a fresh copy", why)
				a.markCopy(why + ", even after pg_rewind")
				a.startRetryAt = time.Time{}
				err := a.recopy(ctx, leader)
				a.repairDone(err)
				return err
			}
			a.event(ctx, cluster.EventRewind, "%s: rewinding", why)
			a.markRewind(why)
			a.startRetryAt = time.Time{}
		}
		return err
	}
	if a.upstream != leader {
		ci, err := a.connInfo(leader, false)
		if err != nil {
			return err
		}
		if err := a.pg.WriteConfig(postgres.Settings{Standby: true, PrimaryConnInfo: &ci, PrimarySlot: postgres.SlotName(a.me.Name)}); err != nil {
			return err
		}
		if err := a.pg.Reload(); err != nil {
			return err
		}
		a.log.Info("following new leader", "leader", leader)
		a.upstream = leader
		a.followSince = time.Now()
		return nil
	}
	if ci, err := a.connInfo(leader, false); err == nil && streamsElsewhere(a.lastStatus, ci) {
		a.restartWalReceiver(ctx, fmt.Sprintf("streams from %s:%d, not from %s at %s:%d",
			a.lastStatus.SenderHost, a.lastStatus.SenderPort, leader, ci.Host, ci.Port))
		return nil
	}
	behind := ok && lm.Timeline > a.timelineSeen && a.timelineSeen > 0
	if a.lastStatus.WalReceiverStatus == "streaming" && !behind {
		a.followSince = time.Now()
		return nil
	}
	// On an older timeline than the upstream's: a receiver that cannot
	// switch to it restarts over and over (and shows "streaming" between
	// attempts). If our WAL goes past the point where our timeline forked
	// off the upstream's, no amount of streaming will switch it: rewind now
	// rather than after a timer.
	if behind && lm.State == cluster.StateRunning && time.Since(a.divergeChecked) > time.Second {
		a.divergeChecked = time.Now()
		if why, err := a.divergedFrom(ctx, leader, lm.Timeline); err != nil {
			a.log.Info("cannot tell whether our WAL left the upstream's history", "upstream", leader, "err", err)
		} else if why != "" {
			a.event(ctx, cluster.EventRewind, "%s: rewinding onto %s's timeline %d", why, leader, lm.Timeline)
			a.markRewind(why)
			err := a.rejoin(ctx, leader)
			a.repairDone(err)
			return err
		}
	}
	notStreaming := notStreamingRewindAfter
	if a.statusOK.IsZero() {
		// Not consistent yet (see startAsStandby): replaying its own WAL
		// may take long, and the start timeout bounds that.
		notStreaming = max(notStreaming, a.cfg.Agent.StartTimeout.D())
	}
	if time.Since(a.followSince) > notStreaming && ok && a.rewindSource(leader) != "" {
		a.markRewind(fmt.Sprintf("not streaming from %s for %s", leader, notStreaming))
		err := a.rejoin(ctx, leader)
		a.repairDone(err)
		return err
	}
	return nil
}

// repairDone backs off repairs (rewind, copy) that fail in a row, up to
// 10 s: their source is usually down, and retrying at once only fills the
// logs.
func (a *Agent) repairDone(err error) {
	if err == nil {
		a.repairFailures, a.repairRetryAt = 0, time.Time{}
		return
	}
	a.repairFailures++
	a.repairRetryAt = time.Now().Add(min(time.Duration(a.repairFailures)*time.Second, 10*time.Second))
}

// offHistory says whether PostgreSQL refused to start because its data
// directory is not on the requested timeline's history (its log is the
// only place that says so).
func offHistory(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not contain minimum recovery point") ||
		strings.Contains(msg, "is not a child of this server's history")
}

// rewindSource is the member to rewind from when following leader: the
// leader if it is a running primary; else, for a standby region's leader,
// the primary (a standby's pg_control can still name the timeline it left,
// and pg_rewind, trusting it, would find nothing to do); "" when neither.
func (a *Agent) rewindSource(leader string) string {
	if lm, ok := a.members[leader]; ok && lm.Role == cluster.RolePrimary && lm.State == cluster.StateRunning {
		return leader
	}
	if pl := a.primaryLeader(); pl != nil {
		if pm, ok := a.members[pl.Member]; ok && pm.Role == cluster.RolePrimary && pm.State == cluster.StateRunning {
			return pl.Member
		}
	}
	return ""
}

// divergedFrom says why our WAL cannot stream onto the upstream's timeline
// tli ("" when it can, as far as its history tells): our timeline ended, in
// the upstream's history, before the WAL we have on it.
func (a *Agent) divergedFrom(ctx context.Context, upstream string, tli int) (string, error) {
	ci, err := a.connInfo(upstream, true)
	if err != nil {
		return "", err
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	hist, err := postgres.ReadTimelineHistory(hctx, ci, tli)
	if err != nil {
		return "", err
	}
	mine, at := a.timelineSeen, a.lastStatus.CurrentLSN
	if !postgres.Diverged(hist, mine, at) {
		return "", nil
	}
	sp, _ := postgres.SwitchPoint(hist, mine)
	return fmt.Sprintf("WAL on timeline %d goes to %s, past %s where timeline %d forked off it", mine, at, sp, tli), nil
}

// streamsElsewhere says whether the WAL receiver is connected to another
// server than the upstream it was pointed at: a reload re-points only a
// receiver the startup process is streaming from at that moment (see
// postgres.Instance.RestartWalReceiver).
func streamsElsewhere(st postgres.Status, want postgres.ConnInfo) bool {
	if st.SenderPort == 0 {
		return false // no receiver, or not connected yet
	}
	return st.SenderPort != want.Port || (st.SenderHost != "" && st.SenderHost != want.Host)
}

// restartWalReceiver stops the WAL receiver so that the next one uses the
// primary_conninfo in force; at most once a second, the time the new one
// takes to connect and show up in the next observation.
func (a *Agent) restartWalReceiver(ctx context.Context, why string) {
	if time.Since(a.rcvRestarted) < time.Second {
		return
	}
	a.rcvRestarted = time.Now()
	a.log.Warn("WAL receiver "+why+"; restarting it", "receiver_status", a.lastStatus.WalReceiverStatus)
	if _, err := a.pg.RestartWalReceiver(ctx); err != nil {
		a.log.Warn("restarting the WAL receiver", "err", err)
	}
}

// rejoin rewinds a former primary (or a diverged replica) onto the leader's
// timeline, falling back to a fresh base backup.
func (a *Agent) rejoin(ctx context.Context, leader string) error {
	a.state = cluster.StateRejoining
	a.publish(ctx, a.observe(ctx), true)
	if err := a.stopPG(ctx, postgres.StopFast); err != nil {
		return fmt.Errorf("rejoin: %w", err)
	}
	from := a.rewindSource(leader)
	if from == "" {
		from = leader
	}
	src, err := a.connInfo(from, true)
	if err != nil {
		return err
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	stop := a.inProgress(ctx, "rewinding from "+from+" (pg_rewind)")
	err = a.pg.Rewind(rctx, src)
	stop()
	cancel()
	if err != nil {
		if !errors.Is(err, postgres.ErrRewindFailed) {
			// The source could not be reached: nothing was touched, and the
			// data directory may hold WAL no one else has. Try again later.
			a.state = cluster.StateStopped
			return fmt.Errorf("rejoin: %w", err)
		}
		// pg_rewind may have left the data directory half rewound: only a
		// fresh copy repairs it, and until one is complete the data stays.
		a.markCopy(fmt.Sprintf("pg_rewind from %s failed: %v", from, err))
		a.event(ctx, cluster.EventRewind, "pg_rewind from %s failed, taking a fresh copy (the data directory stays until it is complete): %v", from, err)
		return a.recopy(ctx, leader)
	}
	a.repaired()
	a.rewoundAt = time.Now()
	if err := a.startAsStandby(ctx, leader); err != nil {
		return err
	}
	a.event(ctx, cluster.EventRejoined, "rejoined as a replica of %s after pg_rewind (%s)", leader, time.Since(start).Round(time.Millisecond))
	return nil
}

// cloneFrom copies an empty data directory from leader.
func (a *Agent) cloneFrom(ctx context.Context, leader string) error {
	return a.copyFrom(ctx, leader, leader, false)
}

// recopy replaces a data directory that only a fresh copy can repair: the
// copy is made beside it and swapped in once complete, so that a source
// dying halfway leaves the data as it was (it may be the only copy of
// acknowledged commits).
func (a *Agent) recopy(ctx context.Context, leader string) error {
	src := a.rewindSource(leader)
	if src == "" {
		src = leader
	}
	return a.copyFrom(ctx, src, leader, true)
}

// copyFrom copies the data directory from the member from, then streams
// from leader.
func (a *Agent) copyFrom(ctx context.Context, from, leader string, replace bool) error {
	a.state = cluster.StateRejoining
	a.publish(ctx, a.observe(ctx), true)
	if a.pg.Running() {
		if err := a.stopPG(ctx, postgres.StopFast); err != nil {
			return fmt.Errorf("copy from %s: %w", from, err)
		}
	}
	src, err := a.connInfo(from, false)
	if err != nil {
		return err
	}
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	stop := a.inProgress(ctx, "copying the data directory from "+from+" (pg_basebackup)")
	if replace {
		err = a.pg.Recopy(bctx, src)
	} else {
		err = a.pg.BaseBackup(bctx, src)
	}
	stop()
	cancel()
	if err != nil {
		a.state = cluster.StateStopped
		return fmt.Errorf("base backup from %s: %w", from, err)
	}
	a.repaired()
	a.event(ctx, cluster.EventBaseBackup, "copied the data directory from %s (%s)", from, time.Since(start).Round(time.Millisecond))
	return a.startAsStandby(ctx, leader)
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
