package agent

import (
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

func TestReplayLagMetric(t *testing.T) {
	m := newMetrics("b")
	// gauge returns the named gauge's value, or false if it is not exported.
	gauge := func(name string) (float64, bool) {
		t.Helper()
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	lag, hb := int64(1500), int64(40)
	for _, tt := range []struct {
		name         string
		pub          cluster.Member
		want, wantHB float64
		ok, okHB     bool
	}{
		{"replica", cluster.Member{Role: cluster.RoleReplica, ReplayLagMS: &lag, HeartbeatLagMS: &hb}, 1.5, 0.04, true, true},
		{"replica, lag unknown", cluster.Member{Role: cluster.RoleReplica}, 0, 0, false, false},
		{"replica again", cluster.Member{Role: cluster.RoleReplica, ReplayLagMS: &lag}, 1.5, 0, true, false},
		{"promoted", cluster.Member{Role: cluster.RolePrimary, HeartbeatLagMS: &hb}, 0, 0, false, false},
	} {
		m.observe(tt.pub, false, true, 1)
		if got, ok := gauge("holdfast_member_replay_lag_seconds"); got != tt.want || ok != tt.ok {
			t.Errorf("%s: replay_lag_seconds = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		if got, ok := gauge("holdfast_member_heartbeat_lag_seconds"); got != tt.wantHB || ok != tt.okHB {
			t.Errorf("%s: heartbeat_lag_seconds = %v, %v; want %v, %v", tt.name, got, ok, tt.wantHB, tt.okHB)
		}
	}
}
