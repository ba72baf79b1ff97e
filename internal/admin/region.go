package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// RegionStatus is one region as `holdfast region status` shows it.
type RegionStatus struct {
	Name string `json:"name"`
	// Role is "primary" or "standby".
	Role string `json:"role"`
	// Leader is the region's leader: the primary, or the standby leader.
	Leader  string `json:"leader"`
	Members int    `json:"members"`
	Running int    `json:"running"`
	// LagBytes is how far the region's leader is behind the primary (0 for
	// the primary region); ReplayLagMS its replay delay as last published.
	LagBytes    int64  `json:"lag_bytes"`
	ReplayLagMS *int64 `json:"replay_lag_ms,omitempty"`
	// LagSeconds is the region leader's lag in time, measured end to end by
	// the primary's heartbeat row (absent if unknown; 0 for the primary
	// region).
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
	// Canary is the region's canary state, when one runs.
	Canary json.RawMessage `json:"canary,omitempty"`
	// MemberDetail is every member of the region with its timeline and
	// lag; Worst names the member furthest behind the primary (a standby
	// region: the one a failover could have to promote if the others were
	// lost too).
	MemberDetail []RegionMember `json:"member_detail"`
	Worst        string         `json:"worst_member,omitempty"`
	// Healthy is false while a member is not running, is on another
	// timeline than the primary, or lags more than the bound; Problems
	// says which and why.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// RegionMember is one member in `region status`.
type RegionMember struct {
	Name       string        `json:"name"`
	Role       cluster.Role  `json:"role"`
	State      cluster.State `json:"state"`
	Timeline   int           `json:"timeline"`
	LagBytes   int64         `json:"lag_bytes"`
	LagSeconds *float64      `json:"lag_seconds,omitempty"`
}

// RegionLagBound is the lag beyond which a standby region's member makes
// its region unhealthy: a region failover then would lose that much.
const RegionLagBound = 5 * time.Second

// Regions is the deployment's regions.
type Regions struct {
	PrimaryRegion string         `json:"primary_region"`
	Regions       []RegionStatus `json:"regions"`
}

// BuildRegions summarises st by region.
func BuildRegions(cfg config.Config, snap store.Snapshot) Regions {
	st := BuildStatus(cfg, snap)
	pr := PrimaryRegion(cfg, snap.Topology)
	out := Regions{PrimaryRegion: pr}
	var names []string
	for _, r := range cfg.Regions {
		names = append(names, r.Name)
	}
	for _, m := range st.Members {
		if !slices.Contains(names, m.Region) {
			names = append(names, m.Region)
		}
	}
	for _, name := range names {
		rs := RegionStatus{Name: name, Role: "standby"}
		if name == pr {
			rs.Role, rs.LagSeconds = "primary", new(float64)
		}
		if l, ok := snap.Leaders[name]; ok {
			rs.Leader = l.Member
		}
		for _, m := range st.Members {
			if m.Region != name {
				continue
			}
			rs.Members++
			if m.State == cluster.StateRunning {
				rs.Running++
			}
			rm := RegionMember{Name: m.Name, Role: m.Role, State: m.State, Timeline: m.Timeline, LagBytes: m.LagBytes}
			if m.HeartbeatLag != nil {
				v := float64(*m.HeartbeatLag) / 1000
				rm.LagSeconds = &v
			}
			rs.MemberDetail = append(rs.MemberDetail, rm)
			if m.Name == rs.Leader && name != pr {
				rs.LagBytes, rs.ReplayLagMS, rs.LagSeconds = m.LagBytes, m.ReplayLag, rm.LagSeconds
			}
		}
		rs.Worst, rs.Problems = regionHealth(rs, name == pr, primaryTimeline(st))
		rs.Healthy = len(rs.Problems) == 0
		out.Regions = append(out.Regions, rs)
	}
	return out
}

func primaryTimeline(st ClusterStatus) int {
	if p, ok := st.PrimaryMember(); ok {
		return p.Timeline
	}
	return 0
}

// regionHealth names the region's member furthest behind and what keeps
// the region from being healthy.
func regionHealth(rs RegionStatus, primaryRegion bool, primaryTL int) (worst string, problems []string) {
	if rs.Leader == "" {
		problems = append(problems, "no leader")
	}
	worstLag := math.Inf(-1)
	for _, m := range rs.MemberDetail {
		if m.State != cluster.StateRunning {
			problems = append(problems, fmt.Sprintf("%s is %s", m.Name, m.State))
			continue
		}
		if primaryRegion && m.Role == cluster.RolePrimary {
			continue
		}
		if primaryTL > 0 && m.Timeline != primaryTL {
			problems = append(problems, fmt.Sprintf("%s is on timeline %d, the primary on %d", m.Name, m.Timeline, primaryTL))
		}
		lag := math.Inf(1) // unknown counts as furthest behind
		if m.LagSeconds != nil {
			lag = *m.LagSeconds
		}
		switch {
		case m.LagSeconds == nil && !primaryRegion:
			problems = append(problems, fmt.Sprintf("%s: lag unknown", m.Name))
		case m.LagSeconds != nil && lag > RegionLagBound.Seconds():
			problems = append(problems, fmt.Sprintf("%s lags %.1fs (bound %s)", m.Name, lag, RegionLagBound))
		}
		if worst == "" || lag > worstLag {
			worst, worstLag = m.Name, lag
		}
	}
	return worst, problems
}

// ReadRegions reads the regions' state from etcd, canaries included.
func ReadRegions(ctx context.Context, st *store.Store, cfg config.Config) (Regions, error) {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return Regions{}, err
	}
	regions := BuildRegions(cfg, snap)
	canaries, err := st.Canaries(ctx)
	if err != nil {
		return Regions{}, err
	}
	for i, r := range regions.Regions {
		regions.Regions[i].Canary = canaries[r.Name]
	}
	return regions, nil
}

// regionChange checks that `to` is a configured region other than the
// primary one, and returns the primary region.
func regionChange(cfg config.Config, snap store.Snapshot, to, what string) (string, error) {
	if !slices.ContainsFunc(cfg.Regions, func(r config.Region) bool { return r.Name == to }) {
		return "", fmt.Errorf("%s refused, nothing changed: region %q is not in the config", what, to)
	}
	from := PrimaryRegion(cfg, snap.Topology)
	if to == from {
		return "", fmt.Errorf("%s refused, nothing changed: %s is already the primary region", what, to)
	}
	return from, nil
}

// RegionSwitchover makes region `to` the primary region with no data
// loss: the proxies hold new work, the primary stops once they have
// drained, the target region's standby leader replays everything and
// promotes, and the old primary region becomes a standby region of the new
// one. Nothing is changed when the region is unknown, is already primary,
// has no running standby leader, or lags.
func RegionSwitchover(ctx context.Context, st *store.Store, cfg config.Config, to string, progress func(string)) (Result, error) {
	start := time.Now()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("region switchover: %w", err)
	}
	from, err := regionChange(cfg, snap, to, "region switchover")
	if err != nil {
		return Result{}, err
	}
	leader, ok := snap.Leaders[from]
	if !ok {
		return Result{}, fmt.Errorf("region switchover refused, nothing changed: %w in region %s (use `holdfast region failover`)", ErrNoPrimary, from)
	}
	target := ""
	if l, ok := snap.Leaders[to]; ok {
		target = l.Member
	}
	if _, err := cluster.RegionSwitchoverTarget(snap.Members, leader.Member, target, to, int64(cfg.Failover.MaxLagOnSwitchover)); err != nil {
		return Result{}, fmt.Errorf("region switchover refused, nothing changed: %w", err)
	}
	deadline := time.Now().Add(cfg.Failover.SwitchoverTimeout.D())
	_, _, err = st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if busy(*t) {
			return ErrInProgress
		}
		if t.Primary != leader.Member || PrimaryRegion(cfg, *t) != from {
			return fmt.Errorf("the primary changed meanwhile")
		}
		t.Switchover = &cluster.SwitchoverRequest{From: leader.Member, To: target, Region: to, RequestedAt: time.Now().UTC(), Deadline: deadline.UTC()}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("region switchover: %w", err)
	}
	progress(fmt.Sprintf("region switchover requested: %s (%s) -> %s (%s)", from, leader.Member, to, target))
	gen, err := waitForPrimary(ctx, st, cfg, snap.Revision, target, deadline, progress)
	if err != nil {
		clearRequest(st, cfg)
		return Result{}, fmt.Errorf("region switchover to %s: %w", to, err)
	}
	return Result{From: leader.Member, To: target, Generation: gen, Took: time.Since(start)}, nil
}

// lossAllowed says whether a region failover from `from` to `to`, whose
// standby leader is target, may proceed with the window loss under the
// bound maxLoss (see RegionFailover).
func lossAllowed(loss DataLoss, maxLoss int64, from, to, target string) error {
	if maxLoss == AnyDataLoss {
		return nil
	}
	if !loss.Known {
		return fmt.Errorf("region failover refused, nothing changed: the old primary's last WAL position is unknown, so writes acknowledged in region %s may be missing from %s; --allow-data-loss to proceed", from, to)
	}
	if loss.WindowBytes > maxLoss {
		bound := ""
		if maxLoss > 0 {
			bound = fmt.Sprintf(", more than the %d allowed", maxLoss)
		}
		return fmt.Errorf("region failover refused, nothing changed: %s has replayed up to %s, the old primary reached %s (%d bytes may be lost%s); --allow-data-loss to proceed", target, loss.ReplayedLSN, loss.LastPrimaryLSN, loss.WindowBytes, bound)
	}
	return nil
}

// DataLoss is what an unplanned region failover may have lost: the last
// WAL position the old primary was known to have reached against what the
// new primary had replayed.
type DataLoss struct {
	// Known is false when no primary of the old region ever reported: the
	// window is then unknown. The position is the last one reported, at the
	// agent's loop interval, so WAL written after that report is not
	// counted.
	Known          bool        `json:"known"`
	LastPrimary    string      `json:"last_primary,omitempty"`
	LastPrimaryAt  time.Time   `json:"last_primary_at,omitzero"`
	LastPrimaryLSN cluster.LSN `json:"last_primary_lsn"`
	ReplayedLSN    cluster.LSN `json:"replayed_lsn"`
	WindowBytes    int64       `json:"window_bytes"`
}

// Bounds of the data a region failover may lose (RegionFailover's maxLoss).
const (
	// NoDataLoss: refuse unless the standby leader has replayed everything
	// the old primary was known to have written.
	NoDataLoss int64 = 0
	// AnyDataLoss: proceed whatever the window, even unknown
	// (--allow-data-loss).
	AnyDataLoss int64 = -1
)

// RegionFailover makes region `to` the primary region when the primary
// region is lost. It refuses, changing nothing, while the old primary
// region still holds its leader key (its primary may be alive and
// accepting writes) unless force is set: a forced failover lets the old
// primary accept writes until its lease runs out, and those are lost. It
// also refuses when more than maxLoss bytes of WAL may be lost (the standby
// leader has not replayed up to the old primary's last known position), or
// when that position is unknown, unless maxLoss is AnyDataLoss. The old
// region's members demote if they come back as primaries and rejoin as a
// standby region.
func RegionFailover(ctx context.Context, st *store.Store, cfg config.Config, to string, maxLoss int64, force bool, progress func(string)) (Result, DataLoss, error) {
	start := time.Now()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return Result{}, DataLoss{}, fmt.Errorf("region failover: %w", err)
	}
	from, err := regionChange(cfg, snap, to, "region failover")
	if err != nil {
		return Result{}, DataLoss{}, err
	}
	if l, ok := snap.Leaders[from]; ok && !force {
		return Result{}, DataLoss{}, fmt.Errorf("region failover refused, nothing changed: region %s still holds its leader lease (%s may be alive and accepting writes); use `holdfast region switchover --to %s`, wait for the lease to expire, or --force", from, l.Member, to)
	}
	l, ok := snap.Leaders[to]
	if !ok {
		return Result{}, DataLoss{}, fmt.Errorf("region failover refused, nothing changed: region %s has no standby leader", to)
	}
	target, ok := snap.Members[l.Member]
	if !ok || target.Role != cluster.RoleReplica || target.State != cluster.StateRunning {
		return Result{}, DataLoss{}, fmt.Errorf("region failover refused, nothing changed: the standby leader %s of %s is not a running replica", l.Member, to)
	}
	loss := DataLoss{ReplayedLSN: target.LSN}
	// The region's last primary report outlives its lease; a live report
	// may be newer.
	if lp, ok, err := st.LastPrimary(ctx, from); err != nil {
		return Result{}, loss, fmt.Errorf("region failover: %w", err)
	} else if ok {
		loss.Known, loss.LastPrimary, loss.LastPrimaryAt, loss.LastPrimaryLSN = true, lp.Member, lp.At, lp.LSN
	}
	for _, m := range snap.Members {
		if m.Region == from && m.Role == cluster.RolePrimary && m.LSN > loss.LastPrimaryLSN {
			loss.Known, loss.LastPrimary, loss.LastPrimaryAt, loss.LastPrimaryLSN = true, m.Name, m.UpdatedAt, m.LSN
		}
	}
	if loss.Known {
		loss.WindowBytes = cluster.Lag(loss.LastPrimaryLSN, loss.ReplayedLSN)
	}
	if err := lossAllowed(loss, maxLoss, from, to, l.Member); err != nil {
		return Result{}, loss, err
	}
	deadline := time.Now().Add(cfg.Failover.SwitchoverTimeout.D())
	_, _, err = st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if busy(*t) {
			return ErrInProgress
		}
		if PrimaryRegion(cfg, *t) != from {
			return fmt.Errorf("the primary region changed meanwhile")
		}
		t.PrimaryRegion, t.Primary = to, l.Member
		t.Generation++
		t.SyncSet = nil
		t.Switchover, t.Failover = nil, nil
		return nil
	})
	if err != nil {
		return Result{}, loss, fmt.Errorf("region failover: %w", err)
	}
	window := "unknown"
	if loss.Known {
		window = fmt.Sprintf("%d bytes (old primary %s at %s as of %s, replayed %s)", loss.WindowBytes, loss.LastPrimary, loss.LastPrimaryLSN,
			loss.LastPrimaryAt.Format(time.RFC3339Nano), loss.ReplayedLSN)
	}
	msg := fmt.Sprintf("region failover %s -> %s: %s promotes; data-loss window %s", from, to, l.Member, window)
	progress(msg)
	_ = st.AppendEvent(ctx, cluster.Event{Kind: cluster.EventRegionFailover, Member: l.Member, Message: msg})
	gen, err := waitForPrimary(ctx, st, cfg, snap.Revision, l.Member, deadline, progress)
	if err != nil {
		return Result{}, loss, fmt.Errorf("region failover to %s: %w", to, err)
	}
	return Result{From: snap.Topology.Primary, To: l.Member, Generation: gen, Took: time.Since(start)}, loss, nil
}
