package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/postgres"
)

// bootstrap creates the cluster when it does not exist yet: the member that
// wins the initialize key runs initdb and becomes the first primary; the
// others later copy its data directory (follow -> cloneFrom).
func (a *Agent) bootstrap(ctx context.Context) error {
	if a.pg.IsInitialized() {
		return nil
	}
	holder, sysID, err := a.st.Initialize(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if holder == "" && a.region != a.cfg.PrimaryRegion {
		// A standby region copies its data from the primary region.
		a.log.Info("waiting for the primary region to initialise the cluster", "primary_region", a.cfg.PrimaryRegion)
		return nil
	}
	if holder == "" {
		won, h, err := a.st.ClaimInitialize(ctx, a.me.Name)
		if err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if !won {
			a.log.Info("another member initialises the cluster", "member", h)
			return nil
		}
		holder = a.me.Name
	}
	if holder != a.me.Name || sysID != "" {
		// Someone else initialises, or the cluster exists and our data
		// directory is new or was lost: copy it from the leader.
		return nil
	}
	// We won (possibly in an earlier run that died half-way): start afresh.
	if err := a.pg.RemoveData(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	start := time.Now()
	if err := a.pg.InitDB(ctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// Roles are created with synchronous replication off: no replica can
	// exist before the replication role does.
	if err := a.pg.WriteConfig(postgres.Settings{}); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.Agent.StartTimeout.D())
	defer cancel()
	if err := a.startPG(sctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	a.standby = false
	if err := a.pg.EnsureReplicationRole(ctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	names, n := a.others(), a.cfg.Failover.SyncCount
	if a.cfg.Failover.SyncMode == cluster.SyncOff {
		names, n = nil, 0
	}
	t := cluster.Topology{
		Cluster: a.cfg.Cluster, PrimaryRegion: a.cfg.PrimaryRegion, Primary: a.me.Name, Generation: 1,
		SyncMode: a.cfg.Failover.SyncMode, SyncCount: a.cfg.Failover.SyncCount, SyncSet: names, SystemID: cd.SystemID,
	}
	lease, _ := a.currentLease()
	if err := a.refresh(ctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	ok, leader, err := a.st.Campaign(ctx, a.region, a.me.Name, lease, a.topoRev, t)
	if err != nil {
		return fmt.Errorf("bootstrap: campaign: %w", err)
	}
	if !ok {
		_ = a.stopPG(ctx, postgres.StopFast)
		return errors.New("bootstrap: the leader key or topology already exists; refusing to create a second cluster")
	}
	a.leader, a.topo, a.generation = leader, t, 1
	a.recordPrimaryGeneration(1)
	a.leading.Store(true)
	if err := a.pg.EnsureSlots(ctx, a.peerSlots()); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := a.pg.WriteConfig(a.primarySettings(names, n, false)); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := a.pg.Reload(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// Recorded last: it marks the bootstrap complete. A run that dies before
	// this point is redone from initdb by the next one.
	if err := a.st.SetSystemID(ctx, cd.SystemID); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	a.syncList = names
	a.state = cluster.StateRunning
	a.event(ctx, cluster.EventBootstrap, "initialised the cluster (system identifier %s) in %s", cd.SystemID, time.Since(start).Round(time.Millisecond))
	return a.refresh(ctx)
}
