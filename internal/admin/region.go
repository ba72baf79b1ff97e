package admin

import (
	"context"
	"fmt"
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
}

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
			rs.Role = "primary"
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
			if m.Name == rs.Leader && name != pr {
				rs.LagBytes, rs.ReplayLagMS = m.LagBytes, m.ReplayLag
			}
		}
		out.Regions = append(out.Regions, rs)
	}
	return out
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
	known := false
	for _, r := range cfg.Regions {
		known = known || r.Name == to
	}
	if !known {
		return Result{}, fmt.Errorf("region switchover refused, nothing changed: region %q is not in the config", to)
	}
	from := PrimaryRegion(cfg, snap.Topology)
	if to == from {
		return Result{}, fmt.Errorf("region switchover refused, nothing changed: %s is already the primary region", to)
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
