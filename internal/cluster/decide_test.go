package cluster

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func member(name string, role Role, state State, lsn LSN, lostRev int64) Member {
	return Member{Name: name, Region: "home", Role: role, State: state, Timeline: 1, LSN: lsn, Streaming: role == RoleReplica && state == StateRunning, LeaderLostRev: lostRev}
}

func topo() Topology {
	return Topology{Cluster: "demo", PrimaryRegion: "home", Primary: "a", Generation: 3, SyncMode: SyncQuorum, SyncCount: 1, SyncSet: []string{"b", "c"}}
}

// primaryView: "a" holds the key and is healthy; b, c replicate.
func primaryView() View {
	return View{
		Now:      t0,
		Local:    Local{Name: "a", Region: "home", LeaseID: 7, LeaseValid: true, PGRunning: true, Timeline: 1, LSN: 1000},
		Topology: topo(),
		Leader:   &Leader{Region: "home", Member: "a", LeaseID: 7, Revision: 50},
		Members: map[string]Member{
			"a": member("a", RolePrimary, StateRunning, 1000, 0),
			"b": member("b", RoleReplica, StateRunning, 1000, 0),
			"c": member("c", RoleReplica, StateRunning, 990, 0),
		},
		ReportTimeout: time.Second,
		MaxLag:        100,
	}
}

// leaderlessView: the leader key of "a" is gone (revision 60); local is "b".
func leaderlessView() View {
	return View{
		Now:      t0,
		Local:    Local{Name: "b", Region: "home", LeaseID: 8, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 1000},
		Topology: topo(),
		Members: map[string]Member{
			"b": member("b", RoleReplica, StateRunning, 1000, 60),
			"c": member("c", RoleReplica, StateRunning, 990, 60),
		},
		LostRev:       60,
		LostAt:        t0.Add(-100 * time.Millisecond),
		ReportTimeout: time.Second,
		MaxLag:        100,
	}
}

// lastPrimaryView: leaderless; local is "a", the last primary, restarted
// read-only with its WAL, 4 s into the leaderless period; b and c (the
// synchronous set) reported.
func lastPrimaryView() View {
	v := leaderlessView()
	v.Topology.Primary = ""
	v.Local = Local{Name: "a", Region: "home", LeaseID: 9, LeaseValid: true, PGRunning: true, InRecovery: true, Timeline: 1, LSN: 1200, HeadOfHistory: true}
	v.Members["a"] = member("a", RoleReplica, StateRunning, 1200, 60)
	v.Now = t0.Add(4 * time.Second)
	return v
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		view   func() View
		want   Action
		target string
	}{
		{"healthy primary", primaryView, ActNone, ""},
		{"primary lease about to expire demotes", func() View {
			v := primaryView()
			v.Local.LeaseValid = false
			return v
		}, ActDemote, ""},
		{"primary postgres crashed, agent alive, replicas healthy: release at once", func() View {
			v := primaryView()
			v.Local.PGRunning = false
			return v
		}, ActRelease, "b"},
		{"primary postgres crashed, only one of two sync replicas alive: restart in place", func() View {
			v := primaryView()
			v.Local.PGRunning = false
			delete(v.Members, "c")
			return v
		}, ActRestartPrimary, ""},
		{"primary postgres crashed while paused: restart in place", func() View {
			v := primaryView()
			v.Local.PGRunning = false
			v.Topology.Paused = true
			return v
		}, ActRestartPrimary, ""},
		{"holder still in recovery finishes promotion", func() View {
			v := primaryView()
			v.Local.InRecovery = true
			return v
		}, ActFinishPromote, ""},
		{"leader key of a previous incarnation is released", func() View {
			v := primaryView()
			v.Local.LeaseID = 9
			v.Local.PGRunning = false
			return v
		}, ActReleaseStale, ""},
		{"leader key of a previous incarnation while postgres is primary: demote first", func() View {
			v := primaryView()
			v.Local.LeaseID = 9
			return v
		}, ActDemote, ""},
		{"replica follows the leader", func() View {
			v := leaderlessView()
			v.Leader = &Leader{Region: "home", Member: "a", LeaseID: 7, Revision: 50}
			return v
		}, ActFollow, "a"},
		{"two claimants: a writable member that does not hold the key demotes", func() View {
			v := leaderlessView()
			v.Leader = &Leader{Region: "home", Member: "c", LeaseID: 9, Revision: 70}
			v.Local.InRecovery = false
			return v
		}, ActDemote, "c"},
		{"leader key expired: replica with the most WAL promotes", leaderlessView, ActPromote, ""},
		{"leader key expired: replica with less WAL waits for the better one", func() View {
			v := leaderlessView()
			v.Local.LSN = 900
			return v
		}, ActNone, "c"},
		{"equal WAL: name breaks the tie identically everywhere", func() View {
			v := leaderlessView()
			v.Members["c"] = member("c", RoleReplica, StateRunning, 1000, 60)
			return v
		}, ActPromote, ""},
		{"equal WAL, other side of the tie", func() View {
			v := leaderlessView()
			v.Local.Name = "c"
			v.Members["b"] = member("b", RoleReplica, StateRunning, 1000, 60)
			return v
		}, ActNone, "b"},
		{"a stale (higher or lower) timeline does not beat more WAL", func() View {
			v := leaderlessView()
			m := member("c", RoleReplica, StateRunning, 500, 60)
			m.Timeline = 2
			v.Members["c"] = m
			return v
		}, ActPromote, ""},
		{"lagging replica waits for the one with more WAL", func() View {
			v := leaderlessView()
			v.Local.LSN = 500
			v.Local.Timeline = 3
			return v
		}, ActNone, "c"},
		{"waits for a live member's fresh report before deciding", func() View {
			v := leaderlessView()
			v.Members["c"] = member("c", RoleReplica, StateRunning, 2000, 55)
			return v
		}, ActNone, ""},
		{"after the report timeout a silent member counts as not answering: R + W <= N", func() View {
			v := leaderlessView()
			v.Members["c"] = member("c", RoleReplica, StateRunning, 2000, 55)
			v.Now = t0.Add(2 * time.Second)
			return v
		}, ActBlocked, ""},
		{"too few members answered (R + W <= N): refuse automatic promotion", func() View {
			v := leaderlessView()
			delete(v.Members, "c")
			return v
		}, ActBlocked, ""},
		{"sync set of one: a single answering member suffices (R + W > N)", func() View {
			v := leaderlessView()
			v.Topology.SyncSet = []string{"b"}
			delete(v.Members, "c")
			return v
		}, ActPromote, ""},
		{"member outside the synchronous set never promotes", func() View {
			v := leaderlessView()
			v.Topology.SyncSet = []string{"a", "c"}
			v.Local.LSN = 5000
			return v
		}, ActNone, ""},
		// The last primary "a" (nobody promoted since it was primary)
		// restarted read-only: a last resort only.
		{"last primary leaves the election to the synchronous set at first", func() View {
			v := lastPrimaryView()
			delete(v.Members, "b")
			delete(v.Members, "c")
			v.Now = t0.Add(time.Second)
			return v
		}, ActNone, ""},
		{"last primary promotes when no replica can be (none answered)", func() View {
			v := lastPrimaryView()
			delete(v.Members, "b")
			delete(v.Members, "c")
			return v
		}, ActPromote, ""},
		{"last primary promotes when the replicas are blocked (R + W <= N)", func() View {
			v := lastPrimaryView()
			delete(v.Members, "c")
			return v
		}, ActPromote, ""},
		{"last primary defers to a replica that can be promoted", lastPrimaryView, ActNone, "b"},
		{"holder whose promotion keeps failing gives the key up", func() View {
			v := primaryView()
			v.Local.InRecovery = true
			v.Local.PromoteFailures = MaxPromoteFailures
			return v
		}, ActRelease, ""},
		{"holder whose promotion failed and whose postgres died gives the key up rather than restart it", func() View {
			v := primaryView()
			v.Local.PGRunning = false
			v.Local.PromoteFailures = MaxPromoteFailures
			delete(v.Members, "b")
			delete(v.Members, "c")
			return v
		}, ActRelease, ""},
		{"holder retries a promotion that failed fewer times", func() View {
			v := primaryView()
			v.Local.InRecovery = true
			v.Local.PromoteFailures = MaxPromoteFailures - 1
			return v
		}, ActFinishPromote, ""},
		{"candidate with the most WAL whose promotion failed: blocked, not a promotion that would lose its commits", func() View {
			v := leaderlessView()
			v.Local.PromoteFailures = MaxPromoteFailures
			c := v.Members["c"]
			c.LSN = 900
			v.Members["c"] = c
			return v
		}, ActBlocked, "b"},
		{"the others wait, blocked, for a member with more WAL whose promotion failed", func() View {
			v := leaderlessView()
			v.Local.LSN = 900
			c := v.Members["c"]
			c.LSN, c.PromoteFailed = 1500, true
			v.Members["c"] = c
			return v
		}, ActBlocked, "c"},
		{"a member whose promotion failed but has less WAL does not hold the election up", func() View {
			v := leaderlessView()
			c := v.Members["c"]
			c.PromoteFailed = true
			v.Members["c"] = c
			return v
		}, ActPromote, ""},
		{"manual failover --allow-data-loss without a target skips the member whose promotion failed", func() View {
			v := leaderlessView()
			v.Local.LSN = 900
			c := v.Members["c"]
			c.LSN, c.PromoteFailed = 1500, true
			v.Members["c"] = c
			v.Topology.Failover = &FailoverRequest{AllowDataLoss: true, Deadline: t0.Add(time.Minute)}
			return v
		}, ActPromote, ""},
		{"last primary whose promotion failed does not promote itself as a last resort", func() View {
			v := lastPrimaryView()
			delete(v.Members, "c")
			v.Local.PromoteFailures = MaxPromoteFailures
			return v
		}, ActBlocked, ""},
		{"a former primary with a later generation never stands", func() View {
			v := lastPrimaryView()
			v.Local.HeadOfHistory = false
			delete(v.Members, "b")
			delete(v.Members, "c")
			return v
		}, ActNone, ""},
		{"relaxed mode with empty synchronous set refuses", func() View {
			v := leaderlessView()
			v.Topology.SyncMode = SyncRelaxed
			v.Topology.SyncSet = nil
			v.Topology.Primary = "x"
			return v
		}, ActNone, ""},
		{"old primary answering as standby is not a candidate and does not make the quorum", func() View {
			v := leaderlessView()
			delete(v.Members, "c")
			v.Members["a"] = member("a", RoleReplica, StateRunning, 5000, 60)
			return v
		}, ActBlocked, ""},
		{"async mode: most WAL wins without quorum", func() View {
			v := leaderlessView()
			v.Topology.SyncMode = SyncOff
			v.Topology.SyncSet = nil
			delete(v.Members, "c")
			return v
		}, ActPromote, ""},
		{"no leader and postgres down: start read-only to report", func() View {
			v := leaderlessView()
			v.Local.PGRunning = false
			return v
		}, ActStartStandby, ""},
		{"writable without the key (woke up after SIGSTOP): demote", func() View {
			v := leaderlessView()
			v.Local.InRecovery = false
			return v
		}, ActDemote, ""},
		{"cluster paused: no automatic promotion", func() View {
			v := leaderlessView()
			v.Topology.Paused = true
			return v
		}, ActNone, ""},
		{"switchover requested: primary hands over to target", func() View {
			v := primaryView()
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", Deadline: t0.Add(time.Minute)}
			return v
		}, ActHandover, "c"},
		{"switchover to a lagging replica waits", func() View {
			v := primaryView()
			v.Members["c"] = member("c", RoleReplica, StateRunning, 10, 0)
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, ""},
		{"expired switchover is ignored", func() View {
			v := primaryView()
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", Deadline: t0.Add(-time.Second)}
			return v
		}, ActNone, ""},
		{"switchover handed over: target promotes once caught up", func() View {
			v := leaderlessView()
			v.Local.Name = "c"
			v.Local.LSN = 1200
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", MinLSN: 1200, HandedOver: true, Deadline: t0.Add(time.Minute)}
			return v
		}, ActPromote, ""},
		{"switchover handed over: target not caught up waits", func() View {
			v := leaderlessView()
			v.Local.Name = "c"
			v.Local.LSN = 1100
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", MinLSN: 1200, HandedOver: true, Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, ""},
		{"switchover handed over: others do not race the target", func() View {
			v := leaderlessView()
			v.Local.LSN = 5000
			v.Topology.Switchover = &SwitchoverRequest{From: "a", To: "c", MinLSN: 1200, HandedOver: true, Deadline: t0.Add(time.Minute)}
			return v
		}, ActNone, "c"},
		{"manual failover --allow-data-loss promotes the named member alone", func() View {
			v := leaderlessView()
			delete(v.Members, "c")
			v.Topology.Failover = &FailoverRequest{To: "b", AllowDataLoss: true, Deadline: t0.Add(time.Minute)}
			return v
		}, ActPromote, ""},
		{"manual failover without --allow-data-loss to a member with less WAL is refused", func() View {
			v := leaderlessView()
			v.Local.Name = "c"
			v.Local.LSN = 900
			v.Members["b"] = member("b", RoleReplica, StateRunning, 1000, 60)
			delete(v.Members, "c")
			v.Topology.Failover = &FailoverRequest{To: "c", Deadline: t0.Add(time.Minute)}
			return v
		}, ActBlocked, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.view())
			if got.Action != tt.want || (tt.target != "" && got.Target != tt.target) {
				t.Fatalf("Decide = %v, want %v %s", got, tt.want, tt.target)
			}
			if got.Reason == "" {
				t.Errorf("plan %v has no reason", got)
			}
		})
	}
}

func TestSwitchoverTarget(t *testing.T) {
	v := primaryView()
	v.Members["d"] = Member{Name: "d", Region: "away", Role: RoleReplica, State: StateRunning, Streaming: true, LSN: 1000}
	v.Members["e"] = Member{Name: "e", Region: "home", Role: RoleReplica, State: StateRunning, Streaming: false, LSN: 1000}
	tests := []struct {
		to      string
		maxLag  int64
		want    string
		wantErr error
	}{
		{"", 100, "b", nil},
		{"c", 100, "c", nil},
		{"c", 5, "", ErrLagging},
		{"zz", 100, "", ErrUnknownMember},
		{"a", 100, "", ErrNotHealthy},
		{"d", 100, "", ErrNotHealthy},
		{"e", 100, "", ErrNotHealthy},
	}
	for _, tt := range tests {
		got, err := SwitchoverTarget(v.Topology, v.Members, "a", tt.to, tt.maxLag)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("SwitchoverTarget(to=%q, lag=%d) = %q, %v; want %q, %v", tt.to, tt.maxLag, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSyncStandbys(t *testing.T) {
	others := []string{"c", "b"}
	tests := []struct {
		mode    string
		count   int
		healthy []string
		want    []string
		n       int
	}{
		{SyncQuorum, 1, []string{"c", "b"}, []string{"b", "c"}, 1},
		{SyncQuorum, 1, []string{"c"}, []string{"c"}, 1},
		{SyncQuorum, 1, nil, []string{"b", "c"}, 1},
		{SyncQuorum, 2, []string{"c"}, []string{"b", "c"}, 2},
		{SyncRelaxed, 1, nil, nil, 0},
		{SyncRelaxed, 2, []string{"b"}, []string{"b"}, 1},
		{SyncOff, 1, []string{"b"}, nil, 0},
	}
	for _, tt := range tests {
		got, n := SyncStandbys(tt.mode, tt.count, tt.healthy, others)
		if n != tt.n || len(got) != len(tt.want) {
			t.Errorf("SyncStandbys(%s,%d,%v) = %v,%d want %v,%d", tt.mode, tt.count, tt.healthy, got, n, tt.want, tt.n)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("SyncStandbys(%s,%d,%v) = %v want %v", tt.mode, tt.count, tt.healthy, got, tt.want)
			}
		}
	}
}
