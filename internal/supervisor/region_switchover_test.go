package supervisor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
)

// pathLoad is a steady load on one path with its records.
type pathLoad struct {
	path   string
	load   *drill.Load
	writer drill.Writer
	done   chan struct{}
}

// TestRegionSwitchoverAndBack moves the primary region to away and back
// under writes on the proxy and buffer paths: no write is refused or left
// in doubt, none is lost or applied twice; the old region's members refuse
// writes and stream from the new primary region; failback restores the
// original layout.
func TestRegionSwitchoverAndBack(t *testing.T) {
	h, ctx, superDSN, r := regionLab(t, 3*time.Second)
	lctx, stopLoads := context.WithCancel(ctx)
	defer stopLoads()
	loads := []*pathLoad{startLoad(t, lctx, r, "proxy", "region-switchover", 50), startLoad(t, lctx, r, "buffer", "region-switchover", 50)}
	// Let the load run on the original layout for a moment.
	waitRecords(ctx, t, loads, 50)

	// Refusals change nothing.
	for _, to := range []string{"mars", "home"} {
		if _, err := admin.RegionSwitchover(ctx, h.sup.Store(), h.cfg, to, func(string) {}); err == nil {
			t.Fatalf("region switchover to %q was accepted", to)
		}
	}

	res, err := admin.RegionSwitchover(ctx, h.sup.Store(), h.cfg, "away", func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region switchover home -> away: %s -> %s in %s", res.From, res.To, res.Took)
	away := h.primary()
	if away.Region != "away" || away.Name != res.To {
		t.Fatalf("primary after the region switchover: %+v", away)
	}
	// The old primary region is a standby region of the new one, and its
	// members refuse writes.
	homeLeader := waitRegionLayout(ctx, t, h, superDSN, "home", away)
	snap, err := h.sup.Store().Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	regions := admin.BuildRegions(h.cfg, snap)
	if regions.PrimaryRegion != "away" || len(regions.Regions) != 2 || regions.Regions[0].Name != "home" || regions.Regions[0].Role != "standby" ||
		regions.Regions[0].Leader != homeLeader.Name || regions.Regions[1].Role != "primary" || regions.Regions[1].Leader != away.Name {
		t.Fatalf("region status after the switchover: %+v", regions)
	}
	refuseWrites(ctx, t, h, superDSN, "home")
	waitRecords(ctx, t, loads, 50)

	// Failback.
	res, err = admin.RegionSwitchover(ctx, h.sup.Store(), h.cfg, "home", func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region switchover away -> home: %s -> %s in %s", res.From, res.To, res.Took)
	back := h.primary()
	if back.Region != "home" {
		t.Fatalf("primary after failback: %+v", back)
	}
	waitRegionLayout(ctx, t, h, superDSN, "away", back)
	waitRecords(ctx, t, loads, 50)
	stopLoads()

	conn, err := pgx.Connect(ctx, superDSN(back)+" dbname="+h.cfg.Postgres.AppDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, pl := range loads {
		if rep := pl.reconcile(ctx, t, conn); rep.Errors+rep.Unknown+rep.LostAcked+rep.Duplicates != 0 {
			t.Errorf("%s: %d errors, %d unknown, %d lost, %d duplicates across two region switchovers", pl.path, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates)
		}
	}
	// The lab's region-switchover drill measures the same on the buffer
	// path.
	rep, err := r.Run(ctx, drill.RunConfig{Scenario: "region-switchover", Path: "buffer", Rate: 40, Duration: 4 * time.Second})
	for attempt := 0; errors.Is(err, drill.ErrUnhealthy) && attempt < 60; attempt++ {
		time.Sleep(time.Second)
		rep, err = r.Run(ctx, drill.RunConfig{Scenario: "region-switchover", Path: "buffer", Rate: 40, Duration: 4 * time.Second})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("region-switchover drill on buffer: %d requests, %d ok, %d errors, %d unknown, %d lost, %d duplicates, downtime %d ms",
		rep.Requests, rep.OK, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates, rep.DowntimeMS)
	if rep.Errors+rep.Unknown+rep.LostAcked+rep.Duplicates != 0 || rep.OK != rep.Requests {
		t.Errorf("region-switchover drill on buffer: %+v", rep)
	}
	back = h.primary()
	if back.Region != "away" {
		t.Fatalf("after the region-switchover drill the primary is %s in %s", back.Name, back.Region)
	}
	if st := h.status(); st.Primary != back.Name {
		t.Fatalf("status names %s primary, want %s", st.Primary, back.Name)
	}
	for _, m := range h.status().Members {
		if m.Region == "home" && m.Role == cluster.RolePrimary {
			t.Fatalf("%s of the standby region reports primary after the drill", m.Name)
		}
	}
	h.checkSamples()
}

// reconcile waits for the load to end and, since the buffer commits
// asynchronously, for every acknowledged write to be in (bounded), then
// reports.
func (pl *pathLoad) reconcile(ctx context.Context, t *testing.T, conn *pgx.Conn) drill.Report {
	t.Helper()
	<-pl.done
	pl.writer.Close()
	recs := pl.load.Records()
	var stored map[string]int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var err error
		if stored, err = drill.Stored(ctx, conn, pl.load.Drill); err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, rec := range recs {
			if rec.Outcome == drill.OK && stored[rec.ID] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep := drill.Summarize(pl.load.Drill, pl.path, pl.load.Rate, drill.Window{Start: recs[0].Sent, End: time.Now(), Fault: recs[0].Sent}, recs, stored, nil)
	t.Logf("%s: %d requests, %d ok, %d errors, %d unknown, %d lost, %d duplicates, longest gap %d ms",
		pl.path, rep.Requests, rep.OK, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates, rep.DowntimeMS)
	return rep
}

// startLoad runs a steady load of rate writes/s on path until ctx ends.
func startLoad(t *testing.T, ctx context.Context, r *drill.Runner, path, name string, rate float64) *pathLoad {
	t.Helper()
	w, err := r.NewWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	pl := &pathLoad{path: path, writer: w, done: make(chan struct{}),
		load: &drill.Load{Drill: name + "-" + path, Writer: w, Rate: rate, Concurrency: 8, Timeout: 30 * time.Second}}
	go func() { defer close(pl.done); pl.load.Run(ctx) }()
	return pl
}

// regionLab starts a two-region deployment and a drill runner on it.
func regionLab(t *testing.T, restartDelay time.Duration) (*harness, context.Context, func(admin.MemberStatus) string, *drill.Runner) {
	t.Helper()
	return regionLabConfig(t, twoRegionConfig(t), restartDelay)
}

// regionLabConfig is regionLab with a config of the test's own.
func regionLabConfig(t *testing.T, cfg config.Config, restartDelay time.Duration) (*harness, context.Context, func(admin.MemberStatus) string, *drill.Runner) {
	t.Helper()
	h := startClusterConfig(t, cfg, restartDelay)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(cancel)
	superDSN := superDSNFunc(t, h)
	waitRegionLayout(ctx, t, h, superDSN, "away", h.primary())
	token, err := api.ReadToken(h.cfg.API.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &drill.Runner{Store: h.sup.Store(), Cfg: h.cfg, AdminToken: token}
	if err := r.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return h, ctx, superDSN, r
}

// waitRecords waits until each load has recorded n more acknowledged writes.
func waitRecords(ctx context.Context, t *testing.T, loads []*pathLoad, n int) {
	t.Helper()
	for _, pl := range loads {
		okCount := func() int {
			c := 0
			for _, r := range pl.load.Records() {
				if r.Outcome == drill.OK {
					c++
				}
			}
			return c
		}
		want := okCount() + n
		deadline := time.Now().Add(60 * time.Second)
		for okCount() < want {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("%s: acknowledged writes stalled at %d (want %d)", pl.path, okCount(), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
