package admin

import (
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

func secs(v float64) *float64 { return &v }

func TestRegionHealth(t *testing.T) {
	running := func(name string, tl int, lag *float64) RegionMember {
		return RegionMember{Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning, Timeline: tl, LagSeconds: lag}
	}
	for _, tt := range []struct {
		name      string
		rs        RegionStatus
		primary   bool
		wantWorst string
		want      []string // substrings of the problems, in order; none: healthy
	}{
		{"standby region in step", RegionStatus{Leader: "away-a", MemberDetail: []RegionMember{running("away-a", 7, secs(0.02)), running("away-b", 7, secs(0.05))}},
			false, "away-b", nil},
		// The case that stayed hidden: the leader fine, a member stuck on an
		// old timeline minutes behind.
		{"member stuck on an old timeline", RegionStatus{Leader: "away-a", MemberDetail: []RegionMember{running("away-a", 7, secs(0)), running("away-b", 3, secs(312))}},
			false, "away-b", []string{"away-b is on timeline 3, the primary on 7", "away-b lags 312.0s"}},
		{"member down", RegionStatus{Leader: "away-a", MemberDetail: []RegionMember{running("away-a", 7, secs(0)), {Name: "away-b", State: cluster.StateRejoining}}},
			false, "away-a", []string{"away-b is rejoining"}},
		{"no standby leader", RegionStatus{MemberDetail: []RegionMember{running("away-a", 7, secs(0))}},
			false, "away-a", []string{"no leader"}},
		{"lag unknown counts as worst", RegionStatus{Leader: "away-a", MemberDetail: []RegionMember{running("away-a", 7, secs(1)), running("away-b", 7, nil)}},
			false, "away-b", []string{"away-b: lag unknown"}},
		{"primary region: the primary itself is not judged", RegionStatus{Leader: "home-a", MemberDetail: []RegionMember{
			{Name: "home-a", Role: cluster.RolePrimary, State: cluster.StateRunning, Timeline: 7}, running("home-b", 7, secs(0.01)), running("home-c", 7, nil)}},
			true, "home-c", nil},
	} {
		worst, problems := regionHealth(tt.rs, tt.primary, 7)
		if worst != tt.wantWorst {
			t.Errorf("%s: worst %q, want %q", tt.name, worst, tt.wantWorst)
		}
		if len(problems) != len(tt.want) {
			t.Errorf("%s: problems %q, want %d like %q", tt.name, problems, len(tt.want), tt.want)
			continue
		}
		for i, w := range tt.want {
			if !strings.Contains(problems[i], w) {
				t.Errorf("%s: problem %d %q, want it to say %q", tt.name, i, problems[i], w)
			}
		}
	}
}

func TestLossAllowed(t *testing.T) {
	known := func(window int64) DataLoss {
		return DataLoss{Known: true, LastPrimary: "home-a", LastPrimaryLSN: cluster.LSN(1000 + window), ReplayedLSN: 1000, WindowBytes: window}
	}
	for _, tt := range []struct {
		name    string
		loss    DataLoss
		maxLoss int64
		refused string
	}{
		{"nothing missing, no loss allowed", known(0), NoDataLoss, ""},
		{"bytes missing, no loss allowed", known(10), NoDataLoss, "(10 bytes may be lost)"},
		{"unknown window, no loss allowed", DataLoss{}, NoDataLoss, "last WAL position is unknown"},
		{"within the canary's bound", known(64 << 20), 64 << 20, ""},
		{"past the canary's bound", known(64<<20 + 1), 64 << 20, "more than the 67108864 allowed"},
		{"unknown window with a bound", DataLoss{}, 64 << 20, "last WAL position is unknown"},
		{"--allow-data-loss: any window", known(1 << 40), AnyDataLoss, ""},
		{"--allow-data-loss: unknown window", DataLoss{}, AnyDataLoss, ""},
	} {
		err := lossAllowed(tt.loss, tt.maxLoss, "home", "away", "away-a")
		if (err == nil) != (tt.refused == "") || err != nil && !strings.Contains(err.Error(), tt.refused) {
			t.Errorf("%s: lossAllowed = %v, want refusal %q", tt.name, err, tt.refused)
		}
	}
}
