package cluster

import (
	"testing"
	"time"
)

// awayView: local "x" in standby region "away" (members x, y); the primary
// region "home" is led by "a"; x leads away.
func awayView() View {
	away := func(name string, lsn LSN, lostRev int64) Member {
		m := member(name, RoleReplica, StateRunning, lsn, lostRev)
		m.Region = "away"
		return m
	}
	return View{
		Now:           t0,
		Local:         Local{Name: "x", Region: "away", LeaseID: 9, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 900},
		Topology:      topo(),
		Leader:        &Leader{Region: "away", Member: "x", LeaseID: 9, Revision: 40},
		PrimaryLeader: &Leader{Region: "home", Member: "a", LeaseID: 7, Revision: 50},
		Members: map[string]Member{
			"a": member("a", RolePrimary, StateRunning, 1000, 0),
			"x": away("x", 900, 0),
			"y": away("y", 880, 0),
		},
		ReportTimeout: time.Second,
	}
}

func TestDecideStandbyRegion(t *testing.T) {
	tests := []struct {
		name   string
		view   func() View
		want   Action
		target string
	}{
		{"standby leader streams from the primary", awayView, ActFollow, "a"},
		{"standby leader follows the new primary after a failover in the primary region", func() View {
			v := awayView()
			v.PrimaryLeader = &Leader{Region: "home", Member: "b", LeaseID: 8, Revision: 70}
			return v
		}, ActFollow, "b"},
		{"standby leader without a primary keeps what it has", func() View {
			v := awayView()
			v.PrimaryLeader = nil
			return v
		}, ActNone, ""},
		{"standby leader never promotes, whatever its lease", func() View {
			v := awayView()
			v.Local.LeaseValid = false
			return v
		}, ActFollow, "a"},
		{"standby leader whose postgres died restarts it read-only", func() View {
			v := awayView()
			v.Local.PGRunning, v.Local.InRecovery = false, false
			return v
		}, ActStartStandby, ""},
		{"stale standby leader key of a previous lease is released", func() View {
			v := awayView()
			v.Local.LeaseID = 10
			return v
		}, ActReleaseStale, ""},
		{"another member cascades from the standby leader", func() View {
			v := awayView()
			v.Local = Local{Name: "y", Region: "away", LeaseID: 11, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 880}
			return v
		}, ActFollow, "x"},
		{"a member running as primary in a standby region demotes (the old primary region after a region failover)", func() View {
			v := awayView()
			v.Topology.PrimaryRegion = "home"
			v.Local = Local{Name: "y", Region: "away", LeaseID: 11, LeaseValid: true, PGRunning: true, InRecovery: false, Timeline: 2, LSN: 950}
			return v
		}, ActDemote, ""},
		{"even the standby leader key holder demotes if it runs as primary", func() View {
			v := awayView()
			v.Local.InRecovery = false
			return v
		}, ActDemote, ""},
		{"no standby leader, postgres down: stream from the primary (a new member clones from it)", func() View {
			v := awayView()
			v.Leader = nil
			v.Local.PGRunning, v.Local.InRecovery = false, false
			return v
		}, ActFollow, "a"},
		{"no standby leader and no primary: start read-only", func() View {
			v := awayView()
			v.Leader, v.PrimaryLeader = nil, nil
			v.Local.PGRunning, v.Local.InRecovery = false, false
			return v
		}, ActStartStandby, ""},
		{"no standby leader: wait for the region's WAL positions", func() View {
			v := awayView()
			v.Leader = nil
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			return v
		}, ActNone, ""},
		{"no standby leader: the member with the most WAL leads", func() View {
			v := awayView()
			v.Leader = nil
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			y := v.Members["y"]
			y.LeaderLostRev = 80
			v.Members["y"] = y
			return v
		}, ActLeadStandby, ""},
		{"no standby leader: after the report timeout the member with the most WAL leads without the silent ones", func() View {
			v := awayView()
			v.Leader = nil
			v.LostRev, v.LostAt = 80, t0.Add(-2*time.Second)
			return v
		}, ActLeadStandby, ""},
		{"no standby leader: a member with less WAL streams from the primary while the other takes the lead", func() View {
			v := awayView()
			v.Leader = nil
			v.Local = Local{Name: "y", Region: "away", LeaseID: 11, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 880}
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			x := v.Members["x"]
			x.LeaderLostRev = 80
			v.Members["x"] = x
			return v
		}, ActFollow, "a"},
		{"no standby leader: a member whose promotion failed does not lead while another can", func() View {
			v := awayView()
			v.Leader = nil
			v.Local.PromoteFailures = MaxPromoteFailures
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			y := v.Members["y"]
			y.LeaderLostRev = 80
			v.Members["y"] = y
			return v
		}, ActFollow, "a"},
		{"no standby leader: the other member leads instead of the one whose promotion failed", func() View {
			v := awayView()
			v.Leader = nil
			v.Local = Local{Name: "y", Region: "away", LeaseID: 11, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 880}
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			x := v.Members["x"]
			x.LeaderLostRev, x.PromoteFailed = 80, true
			v.Members["x"] = x
			return v
		}, ActLeadStandby, ""},
		{"no standby leader: a member whose promotion failed still leads when it is the only one", func() View {
			v := awayView()
			v.Leader = nil
			v.Local.PromoteFailures = MaxPromoteFailures
			delete(v.Members, "y")
			v.LostRev, v.LostAt = 80, t0.Add(-100*time.Millisecond)
			return v
		}, ActLeadStandby, ""},
		{"the standby leader of the region that became primary finishes promotion", func() View {
			v := awayView()
			v.Topology.PrimaryRegion = "away"
			v.Topology.SyncSet = nil
			v.PrimaryLeader = nil
			return v
		}, ActFinishPromote, ""},
		{"region switchover: the primary hands over to the standby leader of the target region", func() View {
			v := primaryView()
			v.Members["x"] = Member{Name: "x", Region: "away", Role: RoleReplica, State: StateRunning, Streaming: true, LSN: 990}
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", Deadline: t0.Add(time.Minute)}
			return v
		}, ActHandover, "x"},
		{"region switchover to a lagging region waits", func() View {
			v := primaryView()
			v.Members["x"] = Member{Name: "x", Region: "away", Role: RoleReplica, State: StateRunning, Streaming: true, LSN: 500}
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, ""},
		{"region switchover to a member that is not streaming waits", func() View {
			v := primaryView()
			v.Members["x"] = Member{Name: "x", Region: "away", Role: RoleReplica, State: StateRunning, LSN: 1000}
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, ""},
		{"region switchover target takes the region once it has everything", func() View {
			v := awayView()
			v.PrimaryLeader = nil
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", HandedOver: true, MinLSN: 900, Deadline: t0.Add(time.Minute)}
			return v
		}, ActTakeRegion, ""},
		{"region switchover target catching up waits", func() View {
			v := awayView()
			v.PrimaryLeader = nil
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", HandedOver: true, MinLSN: 901, Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, ""},
		{"an expired region switchover is not taken", func() View {
			v := awayView()
			v.PrimaryLeader = nil
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", HandedOver: true, MinLSN: 900, Deadline: t0.Add(-time.Second)}
			return v
		}, ActNone, ""},
		{"another member of the target region does not take it", func() View {
			v := awayView()
			v.PrimaryLeader = nil
			v.Local = Local{Name: "y", Region: "away", LeaseID: 11, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 900}
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", HandedOver: true, MinLSN: 900, Deadline: t0.Add(time.Minute)}
			return v
		}, ActFollow, "x"},
		{"the primary region's members wait while the key is handed to another region", func() View {
			v := leaderlessView()
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "x", Region: "away", HandedOver: true, MinLSN: 900, Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, "x"},
		{"after the region switchover the old primary follows the new primary region", func() View {
			v := leaderlessView()
			v.Local = Local{Name: "a", Region: "home", LeaseID: 7, LeaseValid: true}
			v.Topology.PrimaryRegion = "away"
			v.PrimaryLeader = &Leader{Region: "away", Member: "x", LeaseID: 9, Revision: 90}
			return v
		}, ActFollow, "x"},
		{"the primary region's members are not affected by a standby region", func() View {
			v := primaryView()
			v.Members["x"] = Member{Name: "x", Region: "away", Role: RoleReplica, State: StateRunning, LSN: 900}
			return v
		}, ActNone, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(tt.view())
			if p.Action != tt.want || p.Target != tt.target {
				t.Fatalf("Decide = %v, want %v %q", p, tt.want, tt.target)
			}
			if p.Reason == "" {
				t.Fatal("a plan without a reason")
			}
		})
	}
}
