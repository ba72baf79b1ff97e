package cluster

import (
	"slices"
	"sort"
)

// The synchronous-set protocol (invariant 4 of docs/architecture.md): the
// topology records every member that may have confirmed a commit, so that
// an election after the primary's death reads enough of them (R + W > N).
// A member must be recorded before PostgreSQL may count its confirmation
// (widen first), and may leave the record only once the members that stay
// hold everything it could have confirmed (narrow last). The agent carries
// out the steps in the order given; these functions decide them.

// SyncStepKind is what one step of a synchronous-set change does.
type SyncStepKind int

const (
	// SyncRecord writes Set as the topology's synchronous set.
	SyncRecord SyncStepKind = iota
	// SyncConfigure sets PostgreSQL's synchronous_standby_names to
	// ANY N (Set) and reloads.
	SyncConfigure
)

// SyncStep is one side effect, in order.
type SyncStep struct {
	Kind SyncStepKind
	Set  []string
	N    int
}

// SyncChange returns the steps that move PostgreSQL's synchronous standbys
// to want (ANY n) while the topology records recorded, and the set the
// record must later narrow to (nil: nothing owed). Widening comes first:
// the union is recorded before PostgreSQL may count a new member.
// Going asynchronous (want empty) first records an empty set, so that no
// replica is promoted automatically on the strength of the old one.
// Narrowing is left for SyncNarrowDue: until the members that stay have
// flushed what a removed one may have confirmed, the removed one is needed
// in an election.
func SyncChange(recorded, want []string, n int) (steps []SyncStep, narrowTo []string) {
	cur := sortedCopy(recorded)
	union := sortedUnion(cur, want)
	if len(want) > 0 && !slices.Equal(union, cur) {
		steps = append(steps, SyncStep{Kind: SyncRecord, Set: union})
	}
	if len(want) == 0 && len(cur) > 0 {
		steps = append(steps, SyncStep{Kind: SyncRecord, Set: nil})
	}
	steps = append(steps, SyncStep{Kind: SyncConfigure, Set: sortedCopy(want), N: n})
	if len(want) > 0 && !slices.Equal(sortedCopy(want), union) {
		narrowTo = sortedCopy(want)
	}
	return steps, narrowTo
}

// SyncNarrowDue reports whether a narrowing of the record to names (ANY n)
// may happen: bound is the primary's WAL position measured once the
// reload that removed the others had taken effect, and at least n of the
// names have flushed up to it (so any commit a removed member confirmed is
// on n of those that stay). bound 0: not measured yet.
func SyncNarrowDue(names []string, n int, bound LSN, flushed map[string]LSN) bool {
	if bound == 0 {
		return false
	}
	caught := 0
	for _, name := range names {
		if flushed[name] >= bound {
			caught++
		}
	}
	return caught >= n
}

// SyncRestart is the record a primary restarted in place (or promoted)
// must hold before PostgreSQL runs with standbys names: the union of the
// recorded set and names, when that differs from the record (ok false: the
// record already covers them).
func SyncRestart(recorded, names []string) (record []string, ok bool) {
	if len(names) == 0 {
		return nil, false
	}
	union := sortedUnion(recorded, names)
	if slices.Equal(union, sortedCopy(recorded)) {
		return nil, false
	}
	return union, true
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sortedUnion(a, b []string) []string {
	set := map[string]bool{}
	for _, x := range a {
		set[x] = true
	}
	for _, x := range b {
		set[x] = true
	}
	out := make([]string, 0, len(set))
	for x := range set {
		out = append(out, x)
	}
	sort.Strings(out)
	return out
}
