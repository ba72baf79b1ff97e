package agent

import (
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestReplayLagMetric(t *testing.T) {
	m := newMetrics("b")
	// replayLag returns the gauge's value, or false if it is not exported.
	replayLag := func() (float64, bool) {
		t.Helper()
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "holdfast_member_replay_lag_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	lag := int64(1500)
	for _, tt := range []struct {
		name   string
		pub    cluster.Member
		want   float64
		wantOK bool
	}{
		{"replica", cluster.Member{Role: cluster.RoleReplica, ReplayLagMS: &lag}, 1.5, true},
		{"replica, lag unknown", cluster.Member{Role: cluster.RoleReplica}, 0, false},
		{"replica again", cluster.Member{Role: cluster.RoleReplica, ReplayLagMS: &lag}, 1.5, true},
		{"promoted", cluster.Member{Role: cluster.RolePrimary}, 0, false},
	} {
		m.observe(tt.pub, false, true, 1)
		if got, ok := replayLag(); got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: replay_lag_seconds = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}
