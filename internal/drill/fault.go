package drill

// The drill's fault: injected on the primary or its region, and the
// region brought back afterwards.

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/proc"
	"github.com/holdfast/holdfast/internal/store"
)

// standbyRegion is the region a region switchover drill moves the primary
// to: the first standby region with a standby leader.
func (r *Runner) standbyRegion(ctx context.Context) (string, error) {
	snap, err := r.Store.Snapshot(ctx)
	if err != nil {
		return "", err
	}
	regions := admin.BuildRegions(r.Cfg, snap)
	for _, rs := range regions.Regions {
		if rs.Role == "standby" && rs.Leader != "" {
			return rs.Name, nil
		}
	}
	return "", errors.New("region-switchover needs a standby region with a standby leader (see `holdfast region status`)")
}

// regionMembers are the configured members of region.
func (r *Runner) regionMembers(region string) []string {
	var out []string
	for _, reg := range r.Cfg.Regions {
		if reg.Name == region {
			for _, m := range reg.Members {
				out = append(out, m.Name)
			}
		}
	}
	return out
}

// regionOutage follows a region-outage drill once its faults are in: it
// waits for another region to take over (the canary acting), brings the
// lost region back (it rejoins as a standby region), and returns when the
// load should stop: loadUntil, or tail after the takeover if that is
// later. It returns the time of the takeover.
func (r *Runner) regionOutage(ctx context.Context, from string, loadUntil time.Time, tail time.Duration) (time.Time, error) {
	f := r.Cfg.Failover
	limit := f.LeaseTTL.D() + time.Duration(f.CanaryFailures+1)*f.CanaryInterval.D() + 2*time.Minute
	r.progress("region %s is down; waiting for the canary to fail over (up to %s)", from, limit.Round(time.Second))
	deadline := time.Now().Add(limit)
	var takeover time.Time
	for takeover.IsZero() {
		if st, err := admin.Status(ctx, r.Store, r.Cfg); err == nil {
			if p, ok := st.PrimaryMember(); ok && p.Region != from && p.State == cluster.StateRunning {
				takeover = time.Now()
				r.progress("region %s took over: %s is primary", p.Region, p.Name)
				break
			}
		}
		if time.Now().After(deadline) {
			r.heal(ctx, from)
			return time.Time{}, fmt.Errorf("no region took over from %s within %s (is the canary running? see `holdfast region status`)", from, limit.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			r.heal(ctx, from)
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.heal(ctx, from)
	until := takeover.Add(tail)
	if loadUntil.After(until) {
		until = loadUntil
	}
	select {
	case <-ctx.Done():
		return takeover, ctx.Err()
	case <-time.After(time.Until(until)):
	}
	return takeover, nil
}

// waitRejoined waits, at most timeout, for every member of the lost region
// to run again as a replica (the next drill then starts from a settled
// layout); it only reports when they do not.
func (r *Runner) waitRejoined(ctx context.Context, region string, timeout time.Duration) {
	r.progress("waiting for region %s to rejoin as a standby region", region)
	deadline := time.Now().Add(timeout)
	for {
		if st, err := admin.Status(ctx, r.Store, r.Cfg); err == nil {
			left := 0
			for _, m := range st.Members {
				if m.Region == region && (m.Role != cluster.RoleReplica || m.State != cluster.StateRunning) {
					left++
				}
			}
			if left == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			r.progress("region %s has not rejoined within %s; see `holdfast region status`", region, timeout)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// heal ends the down faults of region's members: holdfast up restarts them.
func (r *Runner) heal(ctx context.Context, region string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, m := range r.regionMembers(region) {
		if err := r.Store.ClearFault(cctx, m); err != nil {
			r.progress("restore %s: %v (the fault ends with the drill's lease)", m, err)
		}
	}
}

// inject causes the scenario's fault.
func (r *Runner) inject(ctx context.Context, rc RunConfig, primary admin.MemberStatus, drill string, lease store.LeaseID, targetRegion string) error {
	signal := func(pid int, sig syscall.Signal) error {
		if pid <= 0 {
			return fmt.Errorf("no pid known for %s", primary.Name)
		}
		return syscall.Kill(pid, sig)
	}
	// A node's processes: the agent, the postmaster and every process
	// under it.
	node := func(sig syscall.Signal) error {
		if primary.AgentPID <= 0 || primary.PID <= 0 {
			return fmt.Errorf("no pid known for %s", primary.Name)
		}
		return proc.SignalNode(primary.AgentPID, primary.PID, sig)
	}
	// afterPause undoes a fault after rc.PauseFor, or at once when the
	// drill is cancelled.
	afterPause := func(undo func()) {
		go func() {
			t := time.NewTimer(rc.PauseFor)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			undo()
		}()
	}
	switch rc.Scenario {
	case "kill-primary":
		return signal(primary.PID, syscall.SIGKILL)
	case "kill-node":
		return node(syscall.SIGKILL)
	case "pause-primary":
		if err := node(syscall.SIGSTOP); err != nil {
			return err
		}
		afterPause(func() { _ = node(syscall.SIGCONT) })
		return nil
	case "partition-primary":
		// holdfast up cuts the member's links; the fault lives under the
		// drill's lease, so it heals by itself if the drill dies.
		if err := r.Store.SetFault(ctx, primary.Name, store.Fault{Mode: store.FaultPartition, By: drill}, lease); err != nil {
			return err
		}
		afterPause(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := r.Store.ClearFault(cctx, primary.Name); err != nil {
				r.progress("heal %s: %v (the fault ends with the drill's lease)", primary.Name, err)
			}
		})
		return nil
	case "region-outage":
		// holdfast up kills every member of the primary region and keeps
		// them down while the faults last; they live under the drill's
		// lease, so the region comes back by itself if the drill dies.
		for _, m := range r.regionMembers(primary.Region) {
			if err := r.Store.SetFault(ctx, m, store.Fault{Mode: store.FaultDown, By: drill}, lease); err != nil {
				return err
			}
		}
		return nil
	case "region-switchover":
		go func() {
			_, err := admin.RegionSwitchover(ctx, r.Store, r.Cfg, targetRegion, func(s string) { r.progress("region switchover: %s", s) })
			if err != nil {
				r.progress("region switchover: %v", err)
			}
		}()
		return nil
	case "switchover":
		go func() {
			_, err := admin.Switchover(ctx, r.Store, r.Cfg, "", func(s string) { r.progress("switchover: %s", s) })
			if err != nil {
				r.progress("switchover: %v", err)
			}
		}()
		return nil
	}
	return fmt.Errorf("unknown scenario %q", rc.Scenario)
}
