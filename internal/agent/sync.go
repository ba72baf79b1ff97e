package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
)

// syncShrink is a narrowing of the synchronous set waiting for the replicas
// that remain in it to catch up: until they have flushed WAL up to lsn, a
// commit acknowledged by a removed replica alone may be missing from them.
//
// lsn is read from a status taken after measureAfter, not when the change
// is made: until every walsender has applied the reload, a removed replica
// can still confirm commits, past the position the primary had before.
type syncShrink struct {
	names        []string
	n            int
	lsn          cluster.LSN
	measureAfter time.Time
}

// maintainPrimary keeps synchronous_standby_names and the topology's
// synchronous set in step with the healthy replicas, and keeps slots.
func (a *Agent) maintainPrimary(ctx context.Context) error {
	if a.syncPending == nil && time.Since(a.lastMaint) < a.cfg.Agent.LoopInterval.D()/2 {
		return nil
	}
	a.lastMaint = time.Now()
	st := a.lastStatus
	others := a.others()
	var healthy []string
	flush := map[string]cluster.LSN{}
	for _, r := range st.Replicas {
		if slices.Contains(others, r.AppName) && r.State == "streaming" {
			healthy = append(healthy, r.AppName)
			flush[r.AppName] = r.FlushLSN
		}
	}
	mode := a.topo.SyncMode
	if mode == "" {
		mode = a.cfg.Failover.SyncMode
	}
	want, n := cluster.SyncStandbys(mode, a.topo.SyncCount, healthy, others)

	if !slices.Equal(want, a.syncList) {
		if err := a.changeSync(ctx, mode, want, n); err != nil {
			return err
		}
	}
	if p := a.syncPending; p != nil && p.lsn == 0 && a.statusFresh && !a.statusOK.Before(p.measureAfter) {
		p.lsn = st.CurrentLSN
		// Look again soon: the remaining standbys are synchronous, they
		// confirm that position within milliseconds, and until the set is
		// narrowed an election needs the removed member's report.
		time.AfterFunc(syncCheckAgain, a.poke)
	}
	if p := a.syncPending; p != nil && cluster.SyncNarrowDue(p.names, p.n, p.lsn, flush) {
		if err := a.setSyncSet(ctx, p.names); err != nil {
			return err
		}
		a.syncPending = nil
	}
	if err := a.pg.EnsureSlots(ctx, a.peerSlots()); err != nil {
		a.log.Warn("replication slots", "err", err)
	}
	return nil
}

// changeSync moves PostgreSQL's synchronous standbys to want, keeping the
// invariant that the topology's synchronous set contains every member that
// may have confirmed a commit.
func (a *Agent) changeSync(ctx context.Context, mode string, want []string, n int) error {
	steps, narrowTo := cluster.SyncChange(a.topo.SyncSet, want, n)
	for _, step := range steps {
		switch step.Kind {
		case cluster.SyncRecord:
			if err := a.setSyncSet(ctx, step.Set); err != nil {
				return err
			}
		case cluster.SyncConfigure:
			if err := a.pg.WriteConfig(a.primarySettings(step.Set, step.N, false)); err != nil {
				return err
			}
			if err := a.pg.Reload(); err != nil {
				return err
			}
		}
	}
	a.event(ctx, cluster.EventSyncChanged, "synchronous standbys now %q (policy %s)", postgres.SyncStandbyNamesAny(n, want), mode)
	a.syncList = want
	a.syncPending = nil
	if narrowTo != nil {
		// Narrow later, once the remaining replicas hold everything.
		a.syncPending = &syncShrink{names: narrowTo, n: n, measureAfter: time.Now().Add(syncReloadSettle)}
		time.AfterFunc(syncReloadSettle, a.poke)
	}
	return nil
}

// syncReloadSettle is how long after a reload of synchronous_standby_names
// the primary's WAL position is read as the bound a narrowing waits for:
// walsenders apply a reload when their latch wakes them, within
// milliseconds; this margin covers a loaded machine. syncCheckAgain is when
// the remaining standbys' confirmation is looked at next.
const (
	syncReloadSettle = 250 * time.Millisecond
	syncCheckAgain   = 100 * time.Millisecond
)

func (a *Agent) setSyncSet(ctx context.Context, set []string) error {
	set = slices.Sorted(slices.Values(set))
	t, rev, err := a.st.UpdateTopology(ctx, func(t *cluster.Topology) error {
		if t.Primary != a.me.Name {
			return fmt.Errorf("topology names %q as primary, not us", t.Primary)
		}
		t.SyncSet = set
		return nil
	})
	if err != nil {
		return fmt.Errorf("record synchronous set %v: %w", set, err)
	}
	a.topo, a.topoRev = t, rev
	return nil
}
