package region

import (
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestSafe(t *testing.T) {
	home := cluster.Leader{Region: "home", Member: "home-a"}
	away := cluster.Leader{Region: "away", Member: "away-a"}
	member := func(name, region string, st cluster.State) cluster.Member {
		return cluster.Member{Name: name, Region: region, State: st}
	}
	// The primary region's replicas are alive and running: it is electing.
	electing := map[string]cluster.Member{
		"home-b": member("home-b", "home", cluster.StateRunning),
		"home-c": member("home-c", "home", cluster.StateRunning),
		"away-a": member("away-a", "away", cluster.StateRunning),
	}
	// Only agents with PostgreSQL down remain in the primary region.
	down := map[string]cluster.Member{
		"home-b": member("home-b", "home", cluster.StateStopped),
		"home-c": member("home-c", "home", cluster.StateStarting),
		"away-a": member("away-a", "away", cluster.StateRunning),
	}
	gone := map[string]cluster.Member{"away-a": member("away-a", "away", cluster.StateRunning)}
	const grace = 30 * time.Second
	for _, tt := range []struct {
		name       string
		topo       cluster.Topology
		leaders    map[string]cluster.Leader
		members    map[string]cluster.Member
		leaderless time.Duration
		grace      time.Duration
		ok         bool
		waiting    string
	}{
		{"primary region gone, lease expired, standby leader present: act", cluster.Topology{}, map[string]cluster.Leader{"away": away}, gone, 0, grace, true, ""},
		{"primary region still holds its lease: wait", cluster.Topology{}, map[string]cluster.Leader{"home": home, "away": away}, gone, 0, grace, false, "still holds its leader lease (home-a)"},
		{"no standby leader to promote: wait", cluster.Topology{}, map[string]cluster.Leader{}, gone, time.Minute, grace, false, "no standby leader"},
		{"paused: never act", cluster.Topology{Paused: true}, map[string]cluster.Leader{"away": away}, gone, time.Minute, grace, false, "paused"},
		{"primary region between two of its own elections: wait", cluster.Topology{}, map[string]cluster.Leader{"away": away}, electing, 2 * time.Second, grace, false, "region home is electing a primary (home-b, home-c running)"},
		{"primary region leaderless for the whole grace though members run: act", cluster.Topology{}, map[string]cluster.Leader{"away": away}, electing, grace, grace, true, ""},
		{"primary region's agents alive but no PostgreSQL runs: act", cluster.Topology{}, map[string]cluster.Leader{"away": away}, down, 0, grace, true, ""},
		{"no grace configured: act on the expired lease alone", cluster.Topology{}, map[string]cluster.Leader{"away": away}, electing, 0, 0, true, ""},
	} {
		ok, waiting := Safe(tt.topo, tt.leaders, tt.members, "away", "home", tt.leaderless, tt.grace)
		if ok != tt.ok || !strings.Contains(waiting, tt.waiting) || (tt.waiting == "" && waiting != "") {
			t.Errorf("%s: Safe = %v %q, want %v %q", tt.name, ok, waiting, tt.ok, tt.waiting)
		}
	}
}
