package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/drill"
)

// TestDrills runs every drill on holdfast up at a small rate and checks the
// invariants: no acknowledged write lost and none duplicated on the proxy
// and buffer paths, no error at all on the buffer path, and reports whose
// figures agree with themselves.
func TestDrills(t *testing.T) {
	h := startCluster(t)
	token, err := api.ReadToken(h.cfg.API.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &drill.Runner{Store: h.sup.Store(), Cfg: h.cfg, AdminToken: token, Progress: func(s string) { t.Log(s) }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	if _, err := r.Run(ctx, drill.RunConfig{Scenario: "unplug", Path: "proxy", Rate: 10, Duration: 3 * time.Second}); err == nil {
		t.Fatal("an unknown scenario was accepted")
	}
	// Every scenario on every path, on one cluster.
	type pair struct{ scenario, path string }
	var pairs []pair
	for _, s := range drill.Scenarios {
		if strings.HasPrefix(s, "region-") {
			continue // TestRegionDrill: this cluster has one region
		}
		for _, p := range drill.Paths {
			pairs = append(pairs, pair{s, p})
		}
	}
	for _, tt := range pairs {
		// The previous drill's old primary must rejoin before the next
		// drill finds the cluster healthy.
		var rep drill.Report
		for attempt := 0; ; attempt++ {
			rep, err = r.Run(ctx, drill.RunConfig{Scenario: tt.scenario, Path: tt.path, Rate: 40, Duration: 4 * time.Second, PauseFor: 3 * time.Second})
			if !errors.Is(err, drill.ErrUnhealthy) || attempt == 60 {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			t.Fatalf("%s on %s: %v", tt.scenario, tt.path, err)
		}
		t.Logf("%s on %s: %d requests, %d ok, %d errors, %d unknown, %d lost, %d duplicates, downtime %d ms, recovery %d ms",
			tt.scenario, tt.path, rep.Requests, rep.OK, rep.Errors, rep.Unknown, rep.LostAcked, rep.Duplicates, rep.DowntimeMS, rep.RecoveryMS)
		if rep.OK+rep.Errors+rep.Unknown != rep.Requests || rep.Requests == 0 || len(rep.Timeline) == 0 {
			t.Errorf("%s on %s: inconsistent report %+v", tt.scenario, tt.path, rep)
		}
		if tt.path != "direct" && (rep.LostAcked != 0 || rep.Duplicates != 0) {
			t.Errorf("%s on %s: %d lost acknowledged writes, %d duplicates", tt.scenario, tt.path, rep.LostAcked, rep.Duplicates)
		}
		if tt.path == "buffer" && rep.Errors+rep.Unknown != 0 {
			t.Errorf("%s on buffer: %d errors, %d unknown", tt.scenario, rep.Errors, rep.Unknown)
		}
	}
}
