package supervisor_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
)

// TestRegionOutage: every agent and postmaster of the primary region is
// killed under writes through the buffer. A region failover is refused
// while the old region's lease lives, then promotes the standby region;
// no acknowledged write is lost or applied twice; the old region's members
// come back as a standby region that refuses writes; a region switchover
// brings the primary back.
func TestRegionOutage(t *testing.T) {
	// Killed agents stay dead for 15 s: the region is down that long.
	h, ctx, superDSN, r := regionLab(t, 15*time.Second)
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	pl := startLoad(t, lctx, r, "buffer", "region-outage", 50)
	waitRecords(ctx, t, []*pathLoad{pl}, 50)

	// While the primary region holds its lease, a failover is refused.
	if _, _, err := admin.RegionFailover(ctx, h.sup.Store(), h.cfg, "away", admin.AnyDataLoss, false, func(string) {}); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("region failover with a live primary region: %v", err)
	}

	// The primary region is lost.
	for _, m := range h.status().Members {
		if m.Region == "home" {
			_ = h.sup.SignalAgent(m.Name, syscall.SIGKILL)
			if m.PID > 0 {
				_ = syscall.Kill(m.PID, syscall.SIGKILL)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap, err := h.sup.Store().Snapshot(ctx)
		if err == nil {
			if _, ok := snap.Leaders["home"]; !ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the lost region's leader key did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, loss, err := admin.RegionFailover(ctx, h.sup.Store(), h.cfg, "away", admin.AnyDataLoss, false, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region failover to %s in %s; data-loss window %+v", res.To, res.Took, loss)
	// The old primary's last report outlived its lease.
	if !loss.Known || !strings.HasPrefix(loss.LastPrimary, "home-") || loss.LastPrimaryLSN == 0 {
		t.Errorf("data-loss window after the region outage: %+v, want the last home primary's position", loss)
	}
	away := h.primary()
	if away.Region != "away" {
		t.Fatalf("primary after the region failover: %+v", away)
	}
	waitRecords(ctx, t, []*pathLoad{pl}, 50)

	// The old region comes back (its agents restart) as a standby region
	// of the new primary, and its members refuse writes.
	waitRegionLayout(ctx, t, h, superDSN, "home", away)
	refuseWrites(ctx, t, h, superDSN, "home")
	for _, m := range h.status().Members {
		if m.Region == "home" && m.Role == cluster.RolePrimary {
			t.Fatalf("%s of the old primary region reports primary", m.Name)
		}
	}

	// Failback restores the original layout.
	if _, err := admin.RegionSwitchover(ctx, h.sup.Store(), h.cfg, "home", func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	back := h.primary()
	if back.Region != "home" {
		t.Fatalf("primary after failback: %+v", back)
	}
	waitRegionLayout(ctx, t, h, superDSN, "away", back)
	waitRecords(ctx, t, []*pathLoad{pl}, 50)
	stopLoad()
	conn, err := pgx.Connect(ctx, superDSN(back)+" dbname="+h.cfg.Postgres.AppDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if rep := pl.reconcile(ctx, t, conn); rep.Errors+rep.Unknown+rep.LostAcked+rep.Duplicates != 0 {
		t.Errorf("buffer across the region outage: %+v", rep)
	}
}

// TestRegionOutageDrill: the region-outage drill on the buffer path, with
// short canary settings. holdfast up's supervisor kills the whole primary
// region and keeps it down; the standby region's canary fails over by
// itself; no acknowledged write is lost; the report's region timeline is
// complete; the old region rejoins as a standby region.
func TestRegionOutageDrill(t *testing.T) {
	cfg := twoRegionConfig(t)
	cfg.Failover.CanaryInterval = config.Duration(300 * time.Millisecond)
	cfg.Failover.CanaryFailures = 3
	h, ctx, superDSN, r := regionLabConfig(t, cfg, 20*time.Second)
	r.Progress = func(s string) { t.Log(s) }

	rep, err := r.Run(ctx, drill.RunConfig{Scenario: "region-outage", Path: "buffer", Rate: 40, Duration: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region-outage on buffer: ok %d errors %d unknown %d lost %d dup %d downtime %d ms; region %+v",
		rep.OK, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates, rep.DowntimeMS, rep.Region)
	if rep.LostAcked+rep.Duplicates+rep.Errors+rep.Unknown != 0 || rep.OK == 0 {
		t.Errorf("buffer across the region outage: %+v", rep)
	}
	reg := rep.Region
	if reg == nil || reg.From != "home" || reg.To != "away" || reg.DetectedMS <= 0 || reg.PromotedMS < reg.DetectedMS ||
		reg.TakeoverMS < reg.DetectedMS || reg.TrafficRestoredMS < reg.DetectedMS {
		t.Errorf("region timeline: %+v", reg)
	}
	var downs int
	for _, e := range rep.Timeline {
		if strings.HasPrefix(e.Event, "down home-") {
			downs++
		}
	}
	if downs != 3 {
		t.Errorf("timeline has %d members of home down, want 3: %+v", downs, rep.Timeline)
	}
	if p := h.primary(); p.Region != "away" {
		t.Fatalf("primary after the region outage: %+v", p)
	}
	// The lost region came back as a standby region of the new primary.
	waitRegionLayout(ctx, t, h, superDSN, "home", h.primary())
}
