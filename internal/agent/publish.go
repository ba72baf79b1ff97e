package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
)

// publish writes the member's state under its lease when it changed, or
// every loop interval (the WAL position moves constantly). force writes now.
func (a *Agent) publish(ctx context.Context, local cluster.Local, force bool) {
	m := cluster.Member{
		Name: a.me.Name, Region: a.region, Zone: a.me.Zone, Host: a.me.Host, Port: a.me.ReachPort(),
		State: a.state, Role: cluster.RoleUnknown, Generation: a.topo.Generation,
		AgentPID: os.Getpid(), PID: a.pg.PID(), Version: Version, LastError: a.lastErr,
		PromoteFailed:  cluster.PromoteFailed(a.promoteFails),
		LoopIntervalMS: a.cfg.Agent.LoopInterval.D().Milliseconds(),
	}
	if local.PGRunning {
		m.State = cluster.StateRunning
		if a.state == cluster.StateRejoining {
			m.State = a.state
		}
		m.Timeline = local.Timeline
		m.LSN = local.LSN
		st := a.lastStatus
		if local.InRecovery {
			m.Role = cluster.RoleReplica
			m.ReplayLSN = st.ReplayLSN
			m.Streaming = st.WalReceiverStatus == "streaming"
			m.Upstream = a.upstream
			m.ReplayLagMS = a.replayLagMS(st)
			if d, ok := a.hb.lag(time.Now()); ok {
				ms := d.Milliseconds()
				m.HeartbeatLagMS = &ms
			}
		} else {
			m.Role = cluster.RolePrimary
			m.Generation = a.generation
			if !a.xidKnown.Load() {
				a.readIncarnation(ctx)
			}
			if a.xidKnown.Load() {
				m.FirstXID, m.PGStartedUS = a.firstXID, a.pgStartedUS
			}
			m.SyncStandbyNames = st.SyncStandbyNames
			for _, r := range st.Replicas {
				m.Replicas = append(m.Replicas, cluster.ReplicaStat{Name: r.AppName, State: r.State, SyncState: r.SyncState, FlushLSN: r.FlushLSN, ReplayLSN: r.ReplayLSN})
			}
		}
	} else if a.state != cluster.StateRejoining && a.state != cluster.StateStarting {
		m.State = cluster.StateStopped
	}
	if a.leader == nil && reportFinal(local, a.detachedRev == a.lostRev, a.statusFresh) {
		m.LeaderLostRev = a.lostRev
	}
	isLeader := a.leader != nil && a.leader.Member == a.me.Name
	a.metrics.observe(m, isLeader, local.LeaseValid, len(a.topo.SyncSet))
	// Values that move all the time are published at the loop interval, not
	// on every change: a change wakes every agent, which would publish its
	// own moving values in turn.
	cmp := m
	cmp.UpdatedAt, cmp.LSN, cmp.ReplayLSN, cmp.Replicas, cmp.ReplayLagMS, cmp.HeartbeatLagMS = time.Time{}, 0, 0, nil, nil, nil
	old := a.published
	old.UpdatedAt, old.LSN, old.ReplayLSN, old.Replicas, old.ReplayLagMS, old.HeartbeatLagMS = time.Time{}, 0, 0, nil, nil, nil
	if !force && reflect.DeepEqual(cmp, old) && time.Since(a.lastPublish) < a.cfg.Agent.LoopInterval.D() {
		return
	}
	m.UpdatedAt = time.Now().UTC()
	lease, _ := a.currentLease()
	pctx, cancel := context.WithTimeout(ctx, a.cfg.Etcd.RequestTimeout.D())
	defer cancel()
	if err := a.st.PutMember(pctx, m, lease); err != nil {
		a.log.Warn("publish member state", "err", err)
		return
	}
	a.published = m
	a.lastPublish = time.Now()
	if a.leader == nil {
		a.pubLostRev = m.LeaderLostRev
	}
}

// reportFinal says whether a leaderless member's published state is its
// report for the election: a position that can no longer move (the WAL
// receiver stopped) and that was read now. A position kept from an earlier
// reading may be short of what the member confirmed to the old primary
// since; electing on it could promote a member missing an acknowledged
// commit. A member whose PostgreSQL is not running reports that it is no
// candidate.
func reportFinal(local cluster.Local, detached, fresh bool) bool {
	if !local.PGRunning {
		return true
	}
	return detached && fresh
}

// readIncarnation reads the first transaction id of the primary's current
// incarnation, before its first report as primary lets the proxies send it
// clients (and before the heartbeat writes). If it fails the report goes
// without it, and the next report tries again.
func (a *Agent) readIncarnation(ctx context.Context) {
	xid, started, err := a.pg.Incarnation(ctx)
	if err != nil {
		a.log.Warn("reading the primary's first transaction id", "err", err)
		return
	}
	// An agent restarted under a running primary reads a later id than the
	// one its server began with: keep the reading an earlier agent made for
	// this same postmaster.
	path := a.incarnationFile()
	if b, err := os.ReadFile(path); err == nil {
		if s, f, ok := parseIncarnation(string(b)); ok && s == started && f <= xid {
			xid = f
		}
	}
	if err := os.WriteFile(path, []byte(formatIncarnation(started, xid)), 0o600); err != nil {
		a.log.Warn("saving the primary's first transaction id", "err", err)
	}
	a.firstXID, a.pgStartedUS = xid, started
	a.xidKnown.Store(true)
	a.log.Info("primary incarnation", "first_xid", xid, "postmaster_started_us", started)
}

// incarnationFile keeps the first transaction id read for a postmaster,
// for the next agent if this one restarts while PostgreSQL runs on.
func (a *Agent) incarnationFile() string { return filepath.Join(a.dir, "incarnation") }

func formatIncarnation(startedUS int64, firstXID uint64) string {
	return fmt.Sprintf("%d %d\n", startedUS, firstXID)
}

// parseIncarnation reads what formatIncarnation wrote.
func parseIncarnation(s string) (startedUS int64, firstXID uint64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	started, err1 := strconv.ParseInt(f[0], 10, 64)
	first, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || started <= 0 || first == 0 {
		return 0, 0, false
	}
	return started, first, true
}

// replayLagMS is the replay lag to publish: the lag of the last status plus
// the age of that status, since replay may have stalled since (status
// queries may fail for up to pgUnhealthyAfter before the agent gives up on
// PostgreSQL). nil when unknown.
func (a *Agent) replayLagMS(st postgres.Status) *int64 {
	if !st.ReplayLagKnown || a.statusOK.IsZero() {
		return nil
	}
	ms := (st.ReplayLag + time.Since(a.statusOK)).Milliseconds()
	return &ms
}
