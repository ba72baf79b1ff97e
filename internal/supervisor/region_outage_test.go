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
	if _, _, err := admin.RegionFailover(ctx, h.sup.Store(), h.cfg, "away", true, false, func(string) {}); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("region failover with a live primary region: %v", err)
	}

	// The primary region is lost.
	var homeMembers []admin.MemberStatus
	for _, m := range h.status().Members {
		if m.Region == "home" {
			homeMembers = append(homeMembers, m)
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
	res, loss, err := admin.RegionFailover(ctx, h.sup.Store(), h.cfg, "away", true, false, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region failover to %s in %s; data-loss window known=%v %d bytes", res.To, res.Took, loss.Known, loss.WindowBytes)
	away := h.primary()
	if away.Region != "away" {
		t.Fatalf("primary after the region failover: %+v", away)
	}
	waitRecords(ctx, t, []*pathLoad{pl}, 50)

	// The old region comes back (its agents restart) as a standby region
	// of the new primary, and its members refuse writes.
	waitRegionLayout(ctx, t, h, superDSN, "home", away)
	for _, m := range homeMembers {
		conn, err := pgx.Connect(ctx, superDSN(h.member(h.status(), m.Name)))
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		_, err = conn.Exec(ctx, "CREATE TABLE region_write_probe (x int)")
		conn.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("%s of the old primary region accepted a write (err %v)", m.Name, err)
		}
	}
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

// TestCanaryFailsOverLostRegion: with short canary settings, the standby
// region's canary notices the primary region is gone, waits for its lease
// to expire, and promotes its own region by itself.
func TestCanaryFailsOverLostRegion(t *testing.T) {
	cfg := twoRegionConfig(t)
	cfg.Failover.CanaryInterval = config.Duration(300 * time.Millisecond)
	cfg.Failover.CanaryFailures = 3
	h := startClusterConfig(t, cfg, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	superDSN := superDSNFunc(t, h)
	waitRegionLayout(ctx, t, h, superDSN, "away", h.primary())

	// The canary of the standby region is probing, and succeeding.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs, err := h.sup.Store().Canaries(ctx)
		if err == nil && strings.Contains(string(cs["away"]), `"active":true`) && strings.Contains(string(cs["away"]), `"consecutive_failures":0`) &&
			strings.Contains(string(cs["away"]), `"last_ok_at"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the away canary is not probing successfully: %s (%v)", cs["away"], err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	start := time.Now()
	for _, m := range h.status().Members {
		if m.Region == "home" {
			_ = h.sup.SignalAgent(m.Name, syscall.SIGKILL)
			if m.PID > 0 {
				_ = syscall.Kill(m.PID, syscall.SIGKILL)
			}
		}
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		p := h.primaryDSN()
		if st := h.status(); p != "" && strings.HasPrefix(st.Primary, "away-") {
			t.Logf("the canary promoted %s %s after the region was lost", st.Primary, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			cs, _ := h.sup.Store().Canaries(ctx)
			t.Fatalf("the canary did not fail over: canary %s", cs["away"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.waitEvent(cluster.EventCanaryActed, start)
	// The old region's canary stays idle while its region is down; the
	// new primary region's canary goes quiet.
	waitRegionLayout(ctx, t, h, superDSN, "home", h.primary())
}
