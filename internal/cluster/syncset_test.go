package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSyncChange(t *testing.T) {
	rec := func(set ...string) SyncStep { return SyncStep{Kind: SyncRecord, Set: set} }
	conf := func(n int, set ...string) SyncStep { return SyncStep{Kind: SyncConfigure, Set: set, N: n} }
	for _, tt := range []struct {
		name     string
		recorded []string
		want     []string
		n        int
		steps    []SyncStep
		narrowTo []string
	}{
		{"first standbys: record them, then configure", nil, []string{"b", "c"}, 1,
			[]SyncStep{rec("b", "c"), conf(1, "b", "c")}, nil},
		{"same set: configure only", []string{"b", "c"}, []string{"c", "b"}, 1,
			[]SyncStep{conf(1, "b", "c")}, nil},
		{"a replica joins: widen before PostgreSQL counts it", []string{"b"}, []string{"b", "c"}, 1,
			[]SyncStep{rec("b", "c"), conf(1, "b", "c")}, nil},
		{"a replica leaves: configure, narrow the record later", []string{"b", "c"}, []string{"b"}, 1,
			[]SyncStep{conf(1, "b")}, []string{"b"}},
		{"one replaced by another: widen to both, narrow later", []string{"b"}, []string{"c"}, 1,
			[]SyncStep{rec("b", "c"), conf(1, "c")}, []string{"c"}},
		{"going asynchronous: clear the record first", []string{"b", "c"}, nil, 0,
			[]SyncStep{rec(), conf(0)}, nil},
		{"asynchronous and nothing recorded: configure only", nil, nil, 0,
			[]SyncStep{conf(0)}, nil},
	} {
		steps, narrowTo := SyncChange(tt.recorded, tt.want, tt.n)
		if fmt.Sprint(steps) != fmt.Sprint(tt.steps) || !slices.Equal(narrowTo, tt.narrowTo) {
			t.Errorf("%s: SyncChange(%v, %v, %d) = %v, narrow to %v; want %v, narrow to %v", tt.name, tt.recorded, tt.want, tt.n, steps, narrowTo, tt.steps, tt.narrowTo)
		}
	}
}

func TestSyncNarrowDue(t *testing.T) {
	flushed := map[string]LSN{"b": 100, "c": 90}
	for _, tt := range []struct {
		name  string
		names []string
		n     int
		bound LSN
		due   bool
	}{
		{"not measured yet", []string{"b"}, 1, 0, false},
		{"the one that stays has flushed the bound", []string{"b"}, 1, 100, true},
		{"the one that stays is behind", []string{"c"}, 1, 100, false},
		{"ANY 2: both must be past it", []string{"b", "c"}, 2, 95, false},
		{"ANY 1 of two: one is enough", []string{"b", "c"}, 1, 95, true},
		{"a member with no report counts as behind", []string{"d"}, 1, 1, false},
	} {
		if got := SyncNarrowDue(tt.names, tt.n, tt.bound, flushed); got != tt.due {
			t.Errorf("%s: SyncNarrowDue = %v, want %v", tt.name, got, tt.due)
		}
	}
}

func TestSyncRestart(t *testing.T) {
	if set, ok := SyncRestart([]string{"b"}, []string{"c", "b"}); !ok || !slices.Equal(set, []string{"b", "c"}) {
		t.Errorf("a restart naming a member not recorded: %v %v, want [b c] true", set, ok)
	}
	if _, ok := SyncRestart([]string{"b", "c"}, []string{"c"}); ok {
		t.Error("a restart naming recorded members changed the record")
	}
	if _, ok := SyncRestart([]string{"b"}, nil); ok {
		t.Error("a restart with no standbys changed the record")
	}
}

// TestSyncProtocolKeepsEveryConfirmer drives the protocol through random
// changes of the healthy replicas and checks, after every step, the rule
// an election relies on: every member PostgreSQL may count a confirmation
// from, now or since the last time its WAL was known to be on the members
// that stay, is in the recorded set (or the record is empty, and no
// automatic promotion happens at all).
func TestSyncProtocolKeepsEveryConfirmer(t *testing.T) {
	members := []string{"b", "c", "d", "e"}
	rng := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 200; run++ {
		// As a primary starts: its standbys recorded and configured.
		recorded, configured := []string{"b", "c"}, []string{"b", "c"}
		mayHaveConfirmed := map[string]bool{"b": true, "c": true} // configured at some point and not yet covered
		var pending []string
		pendingN := 0
		check := func(when string) {
			if len(recorded) == 0 {
				return // an empty record refuses every automatic promotion (quorumAnswered)
			}
			for m := range mayHaveConfirmed {
				if !slices.Contains(recorded, m) {
					t.Fatalf("run %d, %s: %s may have confirmed a commit but the record is %v (configured %v)", run, when, m, recorded, configured)
				}
			}
		}
		for step := 0; step < 30; step++ {
			if rng.IntN(3) == 0 && pending != nil {
				// The staying members catch up: the narrowing is due.
				flushed := map[string]LSN{}
				for _, m := range pending {
					flushed[m] = 10
				}
				if SyncNarrowDue(pending, pendingN, 10, flushed) {
					recorded, pending = pending, nil
					mayHaveConfirmed = map[string]bool{}
					for _, m := range configured {
						mayHaveConfirmed[m] = true
					}
					check("after narrowing")
				}
				continue
			}
			var want []string
			for _, m := range members {
				if rng.IntN(2) == 0 {
					want = append(want, m)
				}
			}
			n := 0
			if len(want) > 0 {
				n = 1 + rng.IntN(len(want))
			}
			steps, narrowTo := SyncChange(recorded, want, n)
			for _, s := range steps {
				switch s.Kind {
				case SyncRecord:
					recorded = s.Set
				case SyncConfigure:
					configured = s.Set
					if len(configured) == 0 && len(recorded) > 0 {
						// Commits now wait for nobody: a replica promoted on
						// the strength of the old record could lack them.
						t.Fatalf("run %d: asynchronous with %v still recorded", run, recorded)
					}
					for _, m := range configured {
						mayHaveConfirmed[m] = true
					}
				}
				check(fmt.Sprintf("after %v", s))
			}
			if len(want) == 0 {
				// Asynchronous: commits wait for nobody; the record is empty
				// on purpose (no automatic promotion).
				mayHaveConfirmed = map[string]bool{}
			}
			pending, pendingN = narrowTo, n
		}
	}
}
