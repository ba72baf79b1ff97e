package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// Errors of operator actions. The CLI prints them as refusals.
var (
	// ErrNoPrimary: the action needs a running primary and there is none.
	ErrNoPrimary = errors.New("no primary")
	// ErrInProgress: another switchover or failover is under way.
	ErrInProgress = errors.New("another switchover or failover is in progress")
	// ErrTimeout: the agents did not complete the request in time.
	ErrTimeout = errors.New("timed out")
)

// Result reports a completed switchover or failover.
type Result struct {
	From       string        `json:"from"`
	To         string        `json:"to"`
	Generation int64         `json:"generation"`
	Took       time.Duration `json:"took_ns"`
}

// Switchover asks the primary to hand over to `to` (or the best replica when
// empty) and waits until the new primary runs. Nothing is changed when the
// target is unknown, unhealthy or lagging.
func Switchover(ctx context.Context, st *store.Store, cfg config.Config, to string, progress func(string)) (Result, error) {
	start := time.Now()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("switchover: %w", err)
	}
	if to != "" {
		if _, _, ok := cfg.FindMember(to); !ok {
			if _, live := snap.Members[to]; !live {
				return Result{}, fmt.Errorf("switchover: %s: %w (members: %v)", to, cluster.ErrUnknownMember, cfg.MemberNames())
			}
		}
	}
	region := PrimaryRegion(cfg, snap.Topology)
	leader, ok := snap.Leaders[region]
	if !ok {
		return Result{}, fmt.Errorf("switchover: %w in region %s; use `holdfast failover`", ErrNoPrimary, region)
	}
	target, err := cluster.SwitchoverTarget(snap.Topology, snap.Members, leader.Member, to, int64(cfg.Failover.MaxLagOnSwitchover))
	if err != nil {
		return Result{}, fmt.Errorf("switchover refused, nothing changed: %w", err)
	}
	deadline := time.Now().Add(cfg.Failover.SwitchoverTimeout.D())
	_, _, err = st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if busy(*t) {
			return ErrInProgress
		}
		if t.Primary != leader.Member {
			return fmt.Errorf("the primary changed to %q meanwhile", t.Primary)
		}
		t.Switchover = &cluster.SwitchoverRequest{From: leader.Member, To: target, RequestedAt: time.Now().UTC(), Deadline: deadline.UTC()}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("switchover: %w", err)
	}
	progress(fmt.Sprintf("switchover requested: %s -> %s", leader.Member, target))
	gen, err := waitForPrimary(ctx, st, cfg, snap.Revision, target, deadline, progress)
	if err != nil {
		clearRequest(st, cfg)
		return Result{}, fmt.Errorf("switchover to %s: %w", target, err)
	}
	return Result{From: leader.Member, To: target, Generation: gen, Took: time.Since(start)}, nil
}

// Failover promotes a replica when the primary is gone (or, with a live
// primary, behaves as a switchover). Without allowDataLoss it follows the
// same safety rules as automatic failover, restricted to `to` if given.
func Failover(ctx context.Context, st *store.Store, cfg config.Config, to string, allowDataLoss bool, progress func(string)) (Result, error) {
	start := time.Now()
	if to != "" {
		if _, _, ok := cfg.FindMember(to); !ok {
			return Result{}, fmt.Errorf("failover: %s: %w (members: %v)", to, cluster.ErrUnknownMember, cfg.MemberNames())
		}
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("failover: %w", err)
	}
	if _, ok := snap.Leaders[PrimaryRegion(cfg, snap.Topology)]; ok {
		progress("the primary is running: doing a switchover instead")
		return Switchover(ctx, st, cfg, to, progress)
	}
	if to != "" {
		m, live := snap.Members[to]
		if !live {
			return Result{}, fmt.Errorf("failover refused, nothing changed: %s has no live agent", to)
		}
		if m.Role != cluster.RoleReplica || m.State != cluster.StateRunning {
			return Result{}, fmt.Errorf("failover refused, nothing changed: %s is %s/%s, not a running replica", to, m.Role, m.State)
		}
	}
	deadline := time.Now().Add(cfg.Failover.SwitchoverTimeout.D())
	_, _, err = st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if busy(*t) {
			return ErrInProgress
		}
		t.Failover = &cluster.FailoverRequest{To: to, AllowDataLoss: allowDataLoss, RequestedAt: time.Now().UTC(), Deadline: deadline.UTC()}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("failover: %w", err)
	}
	_ = st.AppendEvent(ctx, cluster.Event{Kind: cluster.EventFailoverRequested, Message: fmt.Sprintf("manual failover requested (to=%q, allow_data_loss=%v)", to, allowDataLoss)})
	progress(fmt.Sprintf("failover requested (to=%q, allow data loss=%v)", to, allowDataLoss))
	gen, err := waitForPrimary(ctx, st, cfg, snap.Revision, to, deadline, progress)
	if err != nil {
		clearRequest(st, cfg)
		return Result{}, fmt.Errorf("failover: %w", err)
	}
	snap, _ = st.Snapshot(ctx)
	return Result{To: snap.Topology.Primary, Generation: gen, Took: time.Since(start)}, nil
}

func busy(t cluster.Topology) bool {
	now := time.Now()
	return (t.Switchover != nil && now.Before(t.Switchover.Deadline)) || (t.Failover != nil && now.Before(t.Failover.Deadline))
}

// clearRequest removes an expired or failed request so it cannot fire later.
func clearRequest(st *store.Store, cfg config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Etcd.RequestTimeout.D())
	defer cancel()
	_, _, _ = st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		t.Switchover, t.Failover = nil, nil
		return nil
	})
}

// waitForPrimary watches until `want` (any member if empty) holds the leader
// key and reports itself primary, or the deadline passes.
func waitForPrimary(ctx context.Context, st *store.Store, cfg config.Config, fromRev int64, want string, deadline time.Time, progress func(string)) (int64, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	updates := st.Watch(ctx, snap.Revision)
	lastBlocked := ""
	for {
		if l, ok := snap.Leaders[PrimaryRegion(cfg, snap.Topology)]; ok && (want == "" || l.Member == want) {
			if m, ok := snap.Members[l.Member]; ok && m.Role == cluster.RolePrimary && m.State == cluster.StateRunning && m.Generation == snap.Topology.Generation {
				progress(fmt.Sprintf("%s is primary (generation %d)", l.Member, snap.Topology.Generation))
				return snap.Topology.Generation, nil
			}
		}
		for _, m := range snap.Members {
			if m.LastError != "" && m.LastError != lastBlocked {
				lastBlocked = m.LastError
				progress(fmt.Sprintf("%s: %s", m.Name, m.LastError))
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, fmt.Errorf("%w: no new primary by the deadline (see `holdfast events`)", ErrTimeout)
			}
			return 0, ctx.Err()
		case u, ok := <-updates:
			if !ok {
				return 0, ctx.Err()
			}
			snap.Apply(u)
		}
	}
}

// PrimaryRegion is the region whose leader is the primary: the topology's
// (a region switchover or failover moves it), else the configured one.
func PrimaryRegion(cfg config.Config, t cluster.Topology) string {
	if t.PrimaryRegion != "" {
		return t.PrimaryRegion
	}
	return cfg.PrimaryRegion
}

// SetPaused pauses (no automatic failover; primaries keep running) or
// resumes the cluster.
func SetPaused(ctx context.Context, st *store.Store, paused bool) error {
	_, _, err := st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if t.Generation == 0 {
			return errors.New("the cluster has not been initialised yet")
		}
		t.Paused = paused
		return nil
	})
	if err != nil {
		return fmt.Errorf("set paused=%v: %w", paused, err)
	}
	kind, msg := cluster.EventResumed, "cluster resumed: automatic failover enabled"
	if paused {
		kind, msg = cluster.EventPaused, "cluster paused: no automatic failover"
	}
	return st.AppendEvent(ctx, cluster.Event{Kind: kind, Message: msg})
}
