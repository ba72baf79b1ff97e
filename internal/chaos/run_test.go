package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/admin"
	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/drill"
)

func TestLabCluster(t *testing.T) {
	lab := func() config.Config {
		return config.Config{Regions: []config.Region{{Name: "home", Members: []config.Member{
			{Name: "a", Host: "127.0.0.1", Port: 15432, AdvertisePort: 25432},
			{Name: "b", Host: "localhost", Port: 15433, AdvertisePort: 25433},
		}}}}
	}
	st := admin.ClusterStatus{Members: []admin.MemberStatus{{Name: "a", AgentPID: 10}, {Name: "b", AgentPID: 11}}}
	if err := LabCluster(lab(), st); err != nil {
		t.Fatalf("holdfast up's cluster refused: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*config.Config, *admin.ClusterStatus)
		want string
	}{
		{"no fault link", func(c *config.Config, _ *admin.ClusterStatus) { c.Regions[0].Members[1].AdvertisePort = 0 }, "member b has no fault link"},
		{"another host", func(c *config.Config, _ *admin.ClusterStatus) { c.Regions[0].Members[0].Host = "10.0.0.5" }, "member a is on 10.0.0.5"},
		{"a name, not this machine", func(c *config.Config, _ *admin.ClusterStatus) { c.Regions[0].Members[0].Host = "db1.internal" }, "member a is on db1.internal"},
		{"no process id", func(_ *config.Config, s *admin.ClusterStatus) { s.Members[1].AgentPID = 0 }, "member b reports no process id"},
	}
	for _, c := range cases {
		cfg := lab()
		s := admin.ClusterStatus{Members: append([]admin.MemberStatus(nil), st.Members...)}
		c.mod(&cfg, &s)
		if err := LabCluster(cfg, s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

func TestTerms(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	events := []cluster.Event{
		{Kind: cluster.EventRewind, Member: "a", Time: t0.Add(time.Second)},
		{Kind: cluster.EventPromoted, Member: "b", Time: t0.Add(2 * time.Second)},
		{Kind: cluster.EventRegionPromoted, Member: "c", Time: t0.Add(3 * time.Second)},
		{Kind: cluster.EventPromoted, Member: "", Time: t0.Add(4 * time.Second)},
	}
	got := Terms("a", t0, events)
	want := []Term{{"a", t0}, {"b", t0.Add(2 * time.Second)}, {"c", t0.Add(3 * time.Second)}}
	if len(got) != len(want) {
		t.Fatalf("terms %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("terms %v, want %v", got, want)
		}
	}
}

func TestRecoveries(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ops := []Op{
		{Invoked: at(0), Completed: at(5000), Outcome: drill.OK},       // sent before the fault
		{Invoked: at(1100), Completed: at(4000), Outcome: drill.OK},    // the first sent after, answered late
		{Invoked: at(1500), Completed: at(3000), Outcome: drill.OK},    // sent later, answered first: the recovery
		{Invoked: at(1200), Completed: at(1300), Outcome: drill.Error}, // refused: not a recovery
	}
	got := recoveries([]AppliedFault{{Start: at(1000)}, {Start: at(6000)}}, ops)
	if got[0].RecoveryMS != 2000 {
		t.Errorf("recovery %d ms, want 2000 (the earliest acknowledgement of a write sent after the fault)", got[0].RecoveryMS)
	}
	if got[1].RecoveryMS != -1 {
		t.Errorf("recovery %d ms with no write after the fault, want -1", got[1].RecoveryMS)
	}
}

// TestOpsNameMembers: the SQL paths say which member answered by its port;
// the checker's terms name members, so a port left unmapped would never be
// judged for two writers (as the first runs were).
func TestOpsNameMembers(t *testing.T) {
	recs := []drill.Record{{ID: "a", Outcome: drill.OK, Member: "port 5432"}, {ID: "b", Outcome: drill.OK, Member: "port 6000"}, {ID: "c", Outcome: drill.OK}}
	ops := opsOf("direct", recs, map[string]string{"port 5432": "home-a"})
	if got := []string{ops[0].Member, ops[1].Member, ops[2].Member}; got[0] != "home-a" || got[1] != "port 6000" || got[2] != "" {
		t.Fatalf("members %q", got)
	}
	t0 := time.Now()
	terms := []Term{{Member: "home-a", From: t0}, {Member: "home-b", From: t0.Add(time.Second)}}
	ops[0].Invoked, ops[0].Completed = t0.Add(2*time.Second), t0.Add(2*time.Second)
	if r := Check(ops[:1], map[string]int{"a": 1}, terms); r.TwoWritersN != 1 {
		t.Fatalf("a write answered by home-a after home-b's promotion: %s", r.Summary())
	}
}
