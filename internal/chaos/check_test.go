package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/drill"
)

func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	op := func(id string, s float64, out drill.Outcome, member string) Op {
		return Op{Path: "proxy", ID: id, Invoked: at(s), Completed: at(s + 0.01), Outcome: out, Member: member}
	}
	// home-a primary from the start, home-b promoted at 10 s, home-a again at 20 s.
	terms := []Term{{Member: "home-a", From: at(0)}, {Member: "home-b", From: at(10)}, {Member: "home-a", From: at(20)}}
	cases := []struct {
		name   string
		ops    []Op
		stored map[string]int
		want   []string // violation kinds, in order
	}{
		{"clean history", []Op{op("a", 1, drill.OK, "home-a"), op("b", 11, drill.OK, "home-b"), op("c", 21, drill.OK, "home-a")},
			map[string]int{"a": 1, "b": 1, "c": 1}, nil},
		{"acknowledged write dropped", []Op{op("a", 1, drill.OK, "home-a"), op("b", 2, drill.OK, "home-a")},
			map[string]int{"a": 1}, []string{Lost}},
		{"write applied twice", []Op{op("a", 1, drill.OK, "home-a")}, map[string]int{"a": 2}, []string{Duplicate}},
		{"unknown applied twice is a duplicate too", []Op{op("a", 1, drill.Unknown, "")}, map[string]int{"a": 2}, []string{Duplicate}},
		{"refused yet applied", []Op{op("a", 1, drill.Error, "home-a")}, map[string]int{"a": 1}, []string{ErrorApplied}},
		{"unknown either way is fine", []Op{op("a", 1, drill.Unknown, ""), op("b", 2, drill.Unknown, "")}, map[string]int{"a": 1}, nil},
		{"refused and absent is fine", []Op{op("a", 1, drill.Error, "")}, map[string]int{}, nil},
		{"second writable primary", []Op{op("a", 12, drill.OK, "home-a")}, map[string]int{"a": 1}, []string{TwoWriters}},
		{"invoked before the promotion, answered after: not two writers", []Op{{Path: "proxy", ID: "a", Invoked: at(9.9), Completed: at(10.5), Outcome: drill.OK, Member: "home-a"}},
			map[string]int{"a": 1}, nil},
		{"the former primary again after its next promotion", []Op{op("a", 25, drill.OK, "home-a")}, map[string]int{"a": 1}, nil},
		{"held across its member's next promotion, answered by the new primary", []Op{{Path: "proxy", ID: "a", Invoked: at(19.5), Completed: at(20.3), Outcome: drill.OK, Member: "home-a"}},
			map[string]int{"a": 1}, nil},
		{"answered just before its member's promoted event", []Op{{Path: "proxy", ID: "a", Invoked: at(19.5), Completed: at(19.9), Outcome: drill.OK, Member: "home-a"}},
			map[string]int{"a": 1}, nil},
		{"answered by the former primary well before its next promotion", []Op{{Path: "proxy", ID: "a", Invoked: at(15), Completed: at(19.5), Outcome: drill.OK, Member: "home-a"}},
			map[string]int{"a": 1}, []string{TwoWriters}},
		{"a member never primary (reader path) is not judged", []Op{op("a", 5, drill.OK, "home-c")}, map[string]int{"a": 1}, nil},
		{"violations in invocation order", []Op{op("late", 3, drill.OK, "home-a"), op("early", 1, drill.OK, "home-a")},
			map[string]int{"late": 2}, []string{Lost, Duplicate}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Check(c.ops, c.stored, terms)
			var got []string
			for _, v := range r.Violations {
				got = append(got, v.Kind)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("violations %v, want %v (%s)", r.Violations, c.want, r.Summary())
			}
			if r.Passed() != (len(c.want) == 0) {
				t.Fatalf("Passed() = %v with %d violations", r.Passed(), len(r.Violations))
			}
		})
	}
}

func TestCheckCounts(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ops := []Op{
		{ID: "a", Invoked: t0, Outcome: drill.OK},
		{ID: "b", Invoked: t0, Outcome: drill.Error},
		{ID: "c", Invoked: t0, Outcome: drill.Unknown},
		{ID: "d", Invoked: t0, Outcome: drill.Unknown},
	}
	r := Check(ops, map[string]int{"a": 1, "c": 1}, nil)
	if r.Ops != 4 || r.OK != 1 || r.Errors != 1 || r.Unknown != 2 || r.UnknownApplied != 1 || r.UnknownAbsent != 1 || !r.Passed() {
		t.Fatalf("%+v", r)
	}
	if want := "4 writes: 1 acknowledged, 1 refused, 2 unknown (1 applied, 1 not); lost 0"; !strings.HasPrefix(r.Summary(), want) {
		t.Fatalf("summary %q, want it to start with %q", r.Summary(), want)
	}
}

func TestSlice(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ops := []Op{
		{Path: "buffer", ID: "far", Invoked: t0, Completed: t0.Add(time.Millisecond), Outcome: drill.OK},
		{Path: "buffer", ID: "near", Invoked: t0.Add(10 * time.Second), Completed: t0.Add(10*time.Second + 5*time.Millisecond), Outcome: drill.OK, Member: "home-b"},
	}
	marks := []Mark{{At: t0.Add(9 * time.Second), What: "kill -9 home-a postmaster"}, {At: t0.Add(30 * time.Second), What: "heal"}}
	s := Slice(ops, marks, t0.Add(10*time.Second), 2*time.Second)
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "== kill -9 home-a postmaster") || !strings.Contains(lines[1], "buffer near ok by home-b") {
		t.Fatalf("slice:\n%s", s)
	}
}

func TestCheckReads(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	writes := []SeqWrite{{1, at(1)}, {3, at(3)}, {2, at(2)}, {4, at(4)}} // out of order on purpose
	const bound = time.Second
	cases := []struct {
		name  string
		read  Read
		stale bool
	}{
		{"nothing acknowledged before the bound", Read{Invoked: at(1.5), Seen: 0}, false},
		{"sees everything acknowledged before the bound", Read{Invoked: at(3.5), Seen: 2}, false},
		{"behind within the bound", Read{Invoked: at(4.5), Seen: 3}, false},
		{"behind beyond the bound", Read{Invoked: at(4.5), Seen: 1}, true},
		{"long after the last write, behind", Read{Invoked: at(60), Seen: 3}, true},
		{"long after the last write, caught up", Read{Invoked: at(60), Seen: 4}, false},
	}
	for _, c := range cases {
		c.read.Session = c.name
		got := CheckReads([]Read{c.read}, writes, bound)
		if (len(got) == 1) != c.stale || len(got) > 1 {
			t.Errorf("%s: violations %v, stale want %v", c.name, got, c.stale)
		}
	}
}
