package agent

// How a replica follows its leader and repairs itself when it cannot:
// re-pointing, pg_rewind after a timeline change, or a fresh copy.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
)

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
		a.followSince, a.streamedAt = time.Now(), time.Now()
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
	// Not streaming: cluster.NotStreamingRepair decides.
	repair, bound := cluster.NotStreamingRepair(cluster.Follower{Now: time.Now(), FollowSince: a.followSince,
		Consistent: !a.statusOK.IsZero(), StartTimeout: a.cfg.Agent.StartTimeout.D(),
		UpstreamRunning: ok && lm.State == cluster.StateRunning, CanRewind: ok && a.rewindSource(leader) != "",
		RewoundAt: a.rewoundAt, StreamedAt: a.streamedAt})
	why := fmt.Sprintf("not streaming from %s for %s", leader, bound)
	switch repair {
	case cluster.RepairCopy:
		a.event(ctx, cluster.EventRewind, "%s, even after pg_rewind: taking a fresh copy", why)
		a.markCopy(why + ", even after pg_rewind")
		err := a.recopy(ctx, leader)
		a.repairDone(err)
		return err
	case cluster.RepairRewind:
		a.markRewind(why)
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
