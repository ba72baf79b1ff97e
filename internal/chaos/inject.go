package chaos

// The nemesis: each fault of the plan carried out on its target, resolved
// when it starts, and its heal scheduled.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/drill"
	"github.com/holdfast/holdfast/internal/proc"
	"github.com/holdfast/holdfast/internal/store"
)

// linkModes are the link faults, as `holdfast up` carries them out.
var linkModes = map[Fault]string{
	PartitionPrimary:     store.FaultPartition,
	PartitionPrimaryEtcd: store.FaultPartitionEtcd,
	OneWayFromPrimary:    store.FaultOneWayFrom,
	OneWayToPrimary:      store.FaultOneWayTo,
	SlowPrimary:          store.FaultSlow,
}

// SlowDelay is the latency slow-primary adds to each of the primary's
// links, each way: every round trip (a query, a synchronous commit's
// wait for its standby, a lease renewal) 500 ms longer, a quarter of the
// default lease (failover.lease_ttl, 2 s).
const SlowDelay = 250 * time.Millisecond

// injector carries out faults and their heals.
type injector struct {
	r     *drill.Runner
	lease store.LeaseID
	drill string

	mu    sync.Mutex
	heals map[int]func() // pending heals by step
	wg    sync.WaitGroup

	// links are the link faults in place, by member, oldest first: a
	// member's links carry one at a time, the latest; its heal puts back
	// the one before, if any still holds.
	linkMu sync.Mutex
	links  map[string][]linkFault
}

// linkFault is a link fault in place: the step that asked for it.
type linkFault struct {
	step  int
	fault store.Fault
}

// pushLink puts fault f (step n) on member's links.
func (in *injector) pushLink(ctx context.Context, member string, n int, f store.Fault) error {
	in.linkMu.Lock()
	defer in.linkMu.Unlock()
	if err := in.r.Store.SetFault(ctx, member, f, in.lease); err != nil {
		return err
	}
	if in.links == nil {
		in.links = map[string][]linkFault{}
	}
	in.links[member] = append(in.links[member], linkFault{step: n, fault: f})
	return nil
}

// popLink heals step n's link fault on member: the member's previous
// fault still in place comes back, or its links heal.
func (in *injector) popLink(member string, n int) {
	in.linkMu.Lock()
	defer in.linkMu.Unlock()
	in.links[member] = slices.DeleteFunc(in.links[member], func(l linkFault) bool { return l.step == n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rest := in.links[member]; len(rest) > 0 {
		_ = in.r.Store.SetFault(ctx, member, rest[len(rest)-1].fault, in.lease)
		return
	}
	delete(in.links, member)
	_ = in.r.Store.ClearFault(ctx, member)
}

// inject starts step s on its target, resolved now, and schedules its heal.
func (in *injector) inject(ctx context.Context, s Step) (string, error) {
	target, err := in.target(ctx, s.Fault)
	if err != nil {
		return "", err
	}
	var heal func()
	switch s.Fault {
	case KillPostmaster:
		err = syscall.Kill(target.PID, syscall.SIGKILL)
	case KillNode, KillReplica:
		err = proc.SignalNode(target.AgentPID, target.PID, syscall.SIGKILL)
	case PauseNode:
		// The processes stopped now are the ones resumed at the heal: if
		// another fault kills the postmaster meanwhile, its children are
		// no longer found under it, and would stay stopped for good.
		var stopped []int
		stopped, err = proc.StopNode(target.AgentPID, target.PID)
		resume := func() {
			for _, pid := range stopped {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		if err != nil {
			resume() // half a fault: undone now, reported
		} else {
			heal = func() {
				resume()
				_ = proc.SignalNode(target.AgentPID, target.PID, syscall.SIGCONT)
			}
		}
	case PausePostmaster:
		if err = syscall.Kill(target.PID, syscall.SIGSTOP); err == nil {
			heal = func() { _ = syscall.Kill(target.PID, syscall.SIGCONT) }
		}
	case PartitionPrimary, PartitionPrimaryEtcd, OneWayFromPrimary, OneWayToPrimary, SlowPrimary:
		f := store.Fault{Mode: linkModes[s.Fault], By: in.drill}
		if s.Fault == SlowPrimary {
			f.DelayMS = int(SlowDelay / time.Millisecond)
		}
		if err = in.pushLink(ctx, target.Name, s.N, f); err == nil {
			heal = func() { in.popLink(target.Name, s.N) }
		}
	default:
		err = fmt.Errorf("fault %s not available here", s.Fault)
	}
	if err != nil || heal == nil {
		return target.Name, err
	}
	in.mu.Lock()
	if in.heals == nil {
		in.heals = map[int]func(){}
	}
	in.heals[s.N] = heal
	in.mu.Unlock()
	in.wg.Add(1)
	time.AfterFunc(s.Hold, func() {
		defer in.wg.Done()
		in.healStep(s.N)
	})
	return target.Name, nil
}

// targetWait bounds the wait for a fault's target (a primary, during a
// failover that an earlier fault caused).
const targetWait = 5 * time.Second

// target resolves who fault hits now: a running replica of the primary's
// region for kill-replica, the primary otherwise; it waits up to
// targetWait for one.
func (in *injector) target(ctx context.Context, f Fault) (admin.MemberStatus, error) {
	deadline := time.Now().Add(targetWait)
	for {
		st, err := admin.Status(ctx, in.r.Store, in.r.Cfg)
		if err == nil {
			primary, ok := st.PrimaryMember()
			if f == KillReplica {
				for _, m := range st.Members {
					if m.Role == cluster.RoleReplica && m.State == cluster.StateRunning && (!ok || m.Region == primary.Region) && m.AgentPID > 0 && m.PID > 0 {
						return m, nil
					}
				}
				err = errors.New("no running replica")
			} else if ok && primary.AgentPID > 0 && primary.PID > 0 {
				return primary, nil
			} else {
				err = errors.New("no primary with known processes")
			}
		}
		if time.Now().After(deadline) {
			return admin.MemberStatus{}, fmt.Errorf("%w within %s", err, targetWait)
		}
		select {
		case <-ctx.Done():
			return admin.MemberStatus{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// healStep runs step n's heal once.
func (in *injector) healStep(n int) {
	in.mu.Lock()
	h := in.heals[n]
	delete(in.heals, n)
	in.mu.Unlock()
	if h != nil {
		h()
	}
}

// waitHeals waits for every scheduled heal.
func (in *injector) waitHeals() { in.wg.Wait() }

// healAll heals, now, whatever is still in place (a run cut short).
func (in *injector) healAll() {
	in.mu.Lock()
	ns := make([]int, 0, len(in.heals))
	for n := range in.heals {
		ns = append(ns, n)
	}
	in.mu.Unlock()
	for _, n := range ns {
		in.healStep(n)
	}
}
