package region

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestSafe(t *testing.T) {
	home := cluster.Leader{Region: "home", Member: "home-a"}
	away := cluster.Leader{Region: "away", Member: "away-a"}
	for _, tt := range []struct {
		name    string
		topo    cluster.Topology
		leaders map[string]cluster.Leader
		ok      bool
		waiting string
	}{
		{"primary region lease expired, standby leader present: act", cluster.Topology{}, map[string]cluster.Leader{"away": away}, true, ""},
		{"primary region still holds its lease: wait", cluster.Topology{}, map[string]cluster.Leader{"home": home, "away": away}, false, "still holds its leader lease (home-a)"},
		{"no standby leader to promote: wait", cluster.Topology{}, map[string]cluster.Leader{}, false, "no standby leader"},
		{"paused: never act", cluster.Topology{Paused: true}, map[string]cluster.Leader{"away": away}, false, "paused"},
	} {
		ok, waiting := Safe(tt.topo, tt.leaders, "away", "home")
		if ok != tt.ok || !strings.Contains(waiting, tt.waiting) || (tt.waiting == "" && waiting != "") {
			t.Errorf("%s: Safe = %v %q, want %v %q", tt.name, ok, waiting, tt.ok, tt.waiting)
		}
	}
}
