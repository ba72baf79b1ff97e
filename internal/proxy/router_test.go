package proxy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/store"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ms(v int64) *int64 { return &v }

// replica is a member that qualifies at t0 with a 1s bound: a running,
// streaming, caught-up replica of home following a, that reported at t0.
func replica(name string) cluster.Member {
	return cluster.Member{
		Name: name, Region: "home", Host: "10.0.0." + name, Port: 5432, Generation: 3,
		Role: cluster.RoleReplica, State: cluster.StateRunning, Streaming: true, Upstream: "a",
		LSN: 1000, ReplayLSN: 1000, ReplayLagMS: ms(0),
		LoopIntervalMS: 1000, UpdatedAt: t0,
	}
}

func TestReaderQualification(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m *cluster.Member)
		now    time.Time
		maxLag time.Duration
		refuse string // substring of the reason; "" qualifies
	}{
		{name: "caught up", edit: func(*cluster.Member) {}},
		{name: "lag at the bound", edit: func(m *cluster.Member) { m.ReplayLagMS = ms(1000) }},
		{name: "lag above the bound", edit: func(m *cluster.Member) { m.ReplayLagMS = ms(1001) }, refuse: "replay lag 1001 ms exceeds 1s"},
		{name: "larger bound", edit: func(m *cluster.Member) { m.ReplayLagMS = ms(4000) }, maxLag: 5 * time.Second},
		{name: "zero bound, caught up", edit: func(*cluster.Member) {}, maxLag: -1},
		{name: "zero bound, behind", edit: func(m *cluster.Member) { m.ReplayLagMS = ms(1) }, maxLag: -1, refuse: "replay lag 1 ms"},
		{name: "lag unknown", edit: func(m *cluster.Member) { m.ReplayLagMS = nil }, refuse: "replay lag unknown"},
		{name: "negative lag", edit: func(m *cluster.Member) { m.ReplayLagMS = ms(-5) }, refuse: "invalid replay lag"},
		{name: "not streaming", edit: func(m *cluster.Member) { m.Streaming = false }, refuse: "not streaming"},
		// A stalled WAL receiver has replayed all it received: lag 0, but
		// once it stops streaming it does not qualify.
		{name: "receiver gone, lag 0", edit: func(m *cluster.Member) { m.Streaming, m.ReplayLagMS = false, ms(0) }, refuse: "not streaming"},
		{name: "rejoining", edit: func(m *cluster.Member) { m.State = cluster.StateRejoining }, refuse: "state is rejoining"},
		{name: "stopped", edit: func(m *cluster.Member) { m.State = cluster.StateStopped }, refuse: "state is stopped"},
		{name: "primary", edit: func(m *cluster.Member) { m.Role = cluster.RolePrimary }, refuse: "role is primary"},
		{name: "unknown role", edit: func(m *cluster.Member) { m.Role = cluster.RoleUnknown }, refuse: "role is unknown"},
		{name: "report two intervals old", edit: func(*cluster.Member) {}, now: t0.Add(2 * time.Second)},
		{name: "report three intervals old", edit: func(*cluster.Member) {}, now: t0.Add(3 * time.Second)},
		{name: "report older than three intervals", edit: func(*cluster.Member) {}, now: t0.Add(3*time.Second + time.Millisecond), refuse: "last report is 3.001s old (limit 3s)"},
		{name: "staleness follows the agent's interval", edit: func(m *cluster.Member) { m.LoopIntervalMS = 200 }, now: t0.Add(700 * time.Millisecond), refuse: "limit 600ms"},
		{name: "staleness does not grow with the bound", edit: func(*cluster.Member) {}, now: t0.Add(4 * time.Second), maxLag: time.Minute, refuse: "old (limit 3s)"},
		{name: "report slightly ahead of our clock", edit: func(*cluster.Member) {}, now: t0.Add(-time.Second)},
		{name: "report far ahead of our clock", edit: func(*cluster.Member) {}, now: t0.Add(-4 * time.Second), refuse: "ahead of this host's clock"},
		{name: "agent without loop interval", edit: func(m *cluster.Member) { m.LoopIntervalMS = 0 }, refuse: "no usable loop interval"},
		{name: "absurd loop interval", edit: func(m *cluster.Member) { m.LoopIntervalMS = 1 << 62 }, refuse: "no usable loop interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := replica("b")
			tt.edit(&m)
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			maxLag := tt.maxLag
			switch maxLag {
			case 0:
				maxLag = time.Second
			case -1:
				maxLag = 0
			}
			got := refusal(m, now, maxLag)
			if tt.refuse == "" && got != "" || tt.refuse != "" && !strings.Contains(got, tt.refuse) {
				t.Errorf("refusal = %q; want %q", got, tt.refuse)
			}
		})
	}
}

// cluster3 is a snapshot of region home with writer a (generation 3) and
// replicas b and c, plus a replica of another region, all reporting at t0.
func cluster3() store.Snapshot {
	a := cluster.Member{Name: "a", Region: "home", Host: "10.0.0.a", Port: 5432, Generation: 3,
		Role: cluster.RolePrimary, State: cluster.StateRunning, LSN: 1000, LoopIntervalMS: 1000, UpdatedAt: t0}
	far := replica("far")
	far.Region, far.Upstream = "away", "x"
	return store.Snapshot{
		Topology: cluster.Topology{Generation: 3, Primary: "a"},
		Leaders:  map[string]cluster.Leader{"home": {Region: "home", Member: "a"}},
		Members:  map[string]cluster.Member{"a": a, "c": replica("c"), "b": replica("b"), "far": far},
	}
}

// history is the writer's reports: a, generation 3, at t0+at with lsn.
func history(marks ...walMark) walHistory {
	return walHistory{writer: "a", generation: 3, marks: marks}
}

func TestReadersFrom(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(s *store.Snapshot)
		wal     walHistory
		want    []string
		refused map[string]string // substrings; b and c only
	}{
		{name: "both replicas, in name order", want: []string{"b", "c"}},
		{
			name: "one lags in replay",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.ReplayLagMS = ms(2500); s.Members["c"] = c },
			want: []string{"b"}, refused: map[string]string{"c": "replay lag 2500 ms"},
		},
		{
			name: "one follows a deposed primary",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.Upstream = "old"; s.Members["c"] = c },
			want: []string{"b"}, refused: map[string]string{"c": `follows "old", not the writer "a"`},
		},
		{
			// c reports no replay lag (it replayed all it received) but had
			// not received what the writer had written 1.5s before.
			name: "one receives too little",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.LSN = 600; s.Members["c"] = c },
			wal:  history(walMark{t0.Add(-3 * time.Second), 500}, walMark{t0.Add(-1500 * time.Millisecond), 700}, walMark{t0.Add(-500 * time.Millisecond), 900}),
			want: []string{"b"}, refused: map[string]string{"c": "had received up to 0/258 at its last report, behind the 0/2BC"},
		},
		{
			name: "behind the writer by less than the bound",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.LSN = 700; s.Members["c"] = c },
			wal:  history(walMark{t0.Add(-3 * time.Second), 500}, walMark{t0.Add(-1500 * time.Millisecond), 700}, walMark{t0.Add(-500 * time.Millisecond), 900}),
			want: []string{"b", "c"},
		},
		{
			name: "writer history newer than the bound tells nothing",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.LSN = 10; s.Members["c"] = c },
			wal:  history(walMark{t0.Add(-500 * time.Millisecond), 900}),
			want: []string{"b", "c"},
		},
		{
			name: "history of an earlier generation is not used",
			edit: func(s *store.Snapshot) { c := s.Members["c"]; c.LSN = 10; s.Members["c"] = c },
			wal:  walHistory{writer: "a", generation: 2, marks: []walMark{{t0.Add(-3 * time.Second), 900}}},
			want: []string{"b", "c"},
		},
		{
			// While no writer is known (a failover) replicas are judged on
			// their own reports; they stop streaming when the leader is lost.
			name: "no writer",
			edit: func(s *store.Snapshot) {
				delete(s.Leaders, "home")
				c := s.Members["c"]
				c.Upstream, c.LSN = "old", 10
				s.Members["c"] = c
			},
			wal:  history(walMark{t0.Add(-3 * time.Second), 900}),
			want: []string{"b", "c"},
		},
		{
			// c's WAL receiver shows "streaming" between failed attempts to
			// switch to the writer's timeline, and its WAL, on the old
			// timeline, goes further than the writer's.
			name: "one on an older timeline than the writer's",
			edit: func(s *store.Snapshot) {
				a, c := s.Members["a"], s.Members["c"]
				a.Timeline, c.Timeline, c.LSN = 5, 4, 5000
				s.Members["a"], s.Members["c"] = a, c
			},
			wal:  history(walMark{t0.Add(-3 * time.Second), 900}),
			want: []string{"b"}, refused: map[string]string{"c": "on timeline 4, the writer on 5"},
		},
		{
			name: "on the writer's timeline",
			edit: func(s *store.Snapshot) {
				a, b, c := s.Members["a"], s.Members["b"], s.Members["c"]
				a.Timeline, b.Timeline, c.Timeline = 5, 5, 6 // c ahead: a report racing a newer promotion
				s.Members["a"], s.Members["b"], s.Members["c"] = a, b, c
			},
			want: []string{"b", "c"},
		},
		{
			name: "writer of another generation is no writer",
			edit: func(s *store.Snapshot) { s.Topology.Generation = 4 },
			want: []string{"b", "c"},
		},
		{
			name: "stale and unknown",
			edit: func(s *store.Snapshot) {
				b, c := s.Members["b"], s.Members["c"]
				b.UpdatedAt = t0.Add(-10 * time.Second)
				c.ReplayLagMS = nil
				s.Members["b"], s.Members["c"] = b, c
			},
			want: nil, refused: map[string]string{"b": "last report is 10s old", "c": "replay lag unknown"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := cluster3()
			if tt.edit != nil {
				tt.edit(&snap)
			}
			got, refused := readersFrom(snap, "home", tt.wal, t0, time.Second)
			var names []string
			for _, g := range got {
				names = append(names, g.Name)
				if want := target(snap.Members[g.Name]); g != want {
					t.Errorf("target %+v; want %+v", g, want)
				}
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("readers = %v; want %v", names, tt.want)
			}
			if len(refused) != 2 {
				t.Errorf("refused = %v; want exactly the home replicas b and c", refused)
			}
			for _, n := range []string{"b", "c"} {
				why, want := refused[n], tt.refused[n]
				if want == "" && why != "" || want != "" && !strings.Contains(why, want) {
					t.Errorf("refused[%s] = %q; want %q", n, why, want)
				}
			}
		})
	}
}

func TestRouterWALHistory(t *testing.T) {
	w := func(name string, gen int64, at time.Duration, lsn cluster.LSN) cluster.Member {
		return cluster.Member{Name: name, Generation: gen, UpdatedAt: t0.Add(at), LSN: lsn}
	}
	mark := func(at time.Duration, lsn cluster.LSN) walMark { return walMark{t0.Add(at), lsn} }
	const keep = 10 * time.Second
	tests := []struct {
		name    string
		reports []cluster.Member
		now     time.Duration // of the last record
		want    walHistory
	}{
		{
			name:    "appends newer reports",
			reports: []cluster.Member{w("a", 3, 0, 100), w("a", 3, time.Second, 200)},
			want:    history(mark(0, 100), mark(time.Second, 200)),
		},
		{
			name:    "same report again (resync) or an older one",
			reports: []cluster.Member{w("a", 3, time.Second, 200), w("a", 3, time.Second, 200), w("a", 3, 0, 100)},
			want:    history(mark(time.Second, 200)),
		},
		{
			name:    "new writer starts over",
			reports: []cluster.Member{w("a", 3, 0, 100), w("b", 4, time.Second, 50)},
			want:    walHistory{writer: "b", generation: 4, marks: []walMark{mark(time.Second, 50)}},
		},
		{
			name:    "new generation starts over",
			reports: []cluster.Member{w("a", 2, 0, 100), w("a", 3, time.Second, 150)},
			want:    history(mark(time.Second, 150)),
		},
		{
			name:    "position moving back starts over",
			reports: []cluster.Member{w("a", 3, 0, 100), w("a", 3, time.Second, 90)},
			want:    history(mark(time.Second, 90)),
		},
		{
			name: "keeps the newest mark older than keep",
			reports: []cluster.Member{
				w("a", 3, 0, 100), w("a", 3, 5*time.Second, 200), w("a", 3, 9*time.Second, 300),
				w("a", 3, 14*time.Second, 400), w("a", 3, 20*time.Second, 500),
			},
			now:  20 * time.Second,
			want: history(mark(9*time.Second, 300), mark(14*time.Second, 400), mark(20*time.Second, 500)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h walHistory
			for _, r := range tt.reports {
				h.record(r, t0.Add(tt.now), keep)
			}
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("history = %+v; want %+v", h, tt.want)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		var h walHistory
		for i := range walHistoryMax + 10 {
			h.record(w("a", 3, time.Duration(i)*time.Millisecond, cluster.LSN(i)), t0, time.Hour)
		}
		if len(h.marks) != walHistoryMax || h.marks[0].lsn != 10 {
			t.Errorf("%d marks from %v; want %d from lsn 10", len(h.marks), h.marks[0], walHistoryMax)
		}
	})

	t.Run("reachedBy", func(t *testing.T) {
		h := history(mark(0, 100), mark(time.Second, 200), mark(2*time.Second, 300))
		for _, tt := range []struct {
			at     time.Duration
			want   cluster.LSN
			wantOK bool
		}{
			{-time.Millisecond, 0, false},
			{0, 100, true},
			{999 * time.Millisecond, 100, true},
			{time.Second, 200, true},
			{time.Hour, 300, true},
		} {
			if got, ok := h.reachedBy(t0.Add(tt.at)); got != tt.want || ok != tt.wantOK {
				t.Errorf("reachedBy(t0%+v) = %v, %v; want %v, %v", tt.at, got, ok, tt.want, tt.wantOK)
			}
		}
		if _, ok := (walHistory{}).reachedBy(t0); ok {
			t.Error("empty history reached something")
		}
	})
}

// TestReadersOfStandbyRegion: a standby region's reader serves the
// region's standby leader (streaming from the writer) and the replicas
// cascading from it, and nothing of the primary region.
func TestReadersOfStandbyRegion(t *testing.T) {
	snap := cluster3()
	snap.Topology.PrimaryRegion = "home"
	snap.Leaders["away"] = cluster.Leader{Region: "away", Member: "lead"}
	for name, upstream := range map[string]string{"lead": "a", "cascade": "lead", "stray": "x"} {
		m := replica(name)
		m.Region, m.Upstream = "away", upstream
		snap.Members[name] = m
	}
	delete(snap.Members, "far")
	got, refused := readersFrom(snap, "away", walHistory{}, t0, time.Second)
	var names []string
	for _, g := range got {
		names = append(names, g.Name)
	}
	if want := []string{"cascade", "lead"}; !reflect.DeepEqual(names, want) {
		t.Errorf("readers of away = %v; want %v (refused %v)", names, want, refused)
	}
	if why := refused["stray"]; !strings.Contains(why, `follows "x"`) {
		t.Errorf("stray refused for %q", why)
	}
	if len(refused) != 3 {
		t.Errorf("refused = %v; want the three away replicas only", refused)
	}
	// In the primary region, following the standby leader qualifies no one.
	c := snap.Members["c"]
	c.Upstream = "lead"
	snap.Members["c"] = c
	if _, refused := readersFrom(snap, "home", walHistory{}, t0, time.Second); !strings.Contains(refused["c"], "not the writer") {
		t.Errorf("home replica following the standby leader: %q", refused["c"])
	}
}
