// Package chaos plans compound faults and checks what a run under them
// did (issue 19). A plan is drawn from a seed (Plan), so that a failing run
// can be replayed; faults may overlap. The history is every write a client
// sent, with when it was sent, when it was answered and how, judged against
// what the database holds at the end and who was the primary when (Check),
// and the replicas' reads against the writes before them (CheckReads).
//
// What a history proves is bounded by what it records: a write is judged by
// its client's outcome and by the rows present at the end; a second
// writable primary is seen only through a write it acknowledged while
// another member held the primary role.
package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/drill"
)

// Op is one write as its client saw it.
type Op struct {
	Path    string // direct, proxy, buffer, api
	ID      string
	Invoked time.Time
	// Completed is when the answer came (or the client gave up).
	Completed time.Time
	Outcome   drill.Outcome
	// Member answered the write, when the path tells.
	Member string
}

// Term is one member's time as the primary, from its promotion (or the
// start) until the next term's start.
type Term struct {
	Member string
	From   time.Time
}

// Violation kinds.
const (
	// Lost: acknowledged, absent at the end.
	Lost = "lost"
	// Duplicate: present more than once.
	Duplicate = "duplicate"
	// ErrorApplied: answered with an error that says the write did not
	// happen, present at the end.
	ErrorApplied = "error-applied"
	// TwoWriters: acknowledged by a member after another member had been
	// promoted (invoked after the promotion, answered by the former
	// primary): two writable primaries at once.
	TwoWriters = "two-writers"
)

// Violation is one breach of the guarantees.
type Violation struct {
	Kind   string    `json:"kind"`
	Path   string    `json:"path"`
	ID     string    `json:"id"`
	At     time.Time `json:"at"` // when the write was invoked
	Detail string    `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s %s at %s: %s", v.Kind, v.Path, v.ID, v.At.Format("15:04:05.000"), v.Detail)
}

// Result is what Check found.
type Result struct {
	Ops                              int
	OK, Errors, Unknown              int
	UnknownApplied, UnknownAbsent    int
	Violations                       []Violation
	LostN, DuplicateN, ErrorAppliedN int
	TwoWritersN                      int
}

// Check judges ops against stored (the rows of each id at the end) and the
// primaries' terms. Violations come in the order of the writes' invocation.
func Check(ops []Op, stored map[string]int, terms []Term) Result {
	var r Result
	sorted := append([]Op(nil), ops...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Invoked.Before(sorted[j].Invoked) })
	add := func(kind string, o Op, detail string, args ...any) {
		r.Violations = append(r.Violations, Violation{Kind: kind, Path: o.Path, ID: o.ID, At: o.Invoked, Detail: fmt.Sprintf(detail, args...)})
	}
	for _, o := range sorted {
		r.Ops++
		n := stored[o.ID]
		switch o.Outcome {
		case drill.OK:
			r.OK++
			if n == 0 {
				r.LostN++
				add(Lost, o, "acknowledged by %s at %s, not in the table", member(o.Member), o.Completed.Format("15:04:05.000"))
			}
		case drill.Error:
			r.Errors++
			if n > 0 {
				r.ErrorAppliedN++
				add(ErrorApplied, o, "refused at %s, yet in the table", o.Completed.Format("15:04:05.000"))
			}
		default:
			r.Unknown++
			if n > 0 {
				r.UnknownApplied++
			} else {
				r.UnknownAbsent++
			}
		}
		if n > 1 {
			r.DuplicateN++
			add(Duplicate, o, "%d rows", n)
		}
		if o.Outcome == drill.OK && o.Member != "" {
			if t, ok := deposedBy(terms, o); ok {
				r.TwoWritersN++
				add(TwoWriters, o, "acknowledged by %s, invoked after %s was promoted at %s", o.Member, t.Member, t.From.Format("15:04:05.000"))
			}
		}
	}
	return r
}

// deposedBy returns the term of another member that began before o was
// invoked and after the last term of o's member begun by the time o was
// answered: o was answered by a primary replaced before the write was even
// sent. A write held across its member's own promotion (sent while another
// was primary, answered by the new one) is fine: its member's term begun
// by the answer is that promotion. The agents log a promotion once it is
// done, so a first write may be answered a little before its member's
// "promoted" event: promotionStampSlack allows for that.
func deposedBy(terms []Term, o Op) (Term, bool) {
	var own, later *Term
	answered := o.Completed
	if answered.Before(o.Invoked) {
		answered = o.Invoked
	}
	for i := range terms {
		t := &terms[i]
		if t.Member != o.Member || t.From.After(answered.Add(promotionStampSlack)) {
			continue
		}
		if own == nil || t.From.After(own.From) {
			own = t
		}
	}
	if own == nil {
		return Term{}, false // never the primary before o: a reader path or an unknown start
	}
	for i := range terms {
		t := &terms[i]
		if t.Member != o.Member && t.From.After(own.From) && t.From.Before(o.Invoked) {
			if later == nil || t.From.Before(later.From) {
				later = t
			}
		}
	}
	if later == nil {
		return Term{}, false
	}
	return *later, true
}

// promotionStampSlack: how much earlier than its member's "promoted" event
// a write may be answered by the new primary.
const promotionStampSlack = 250 * time.Millisecond

func member(m string) string {
	if m == "" {
		return "the path"
	}
	return m
}

// Passed reports whether the history holds no violation.
func (r Result) Passed() bool { return len(r.Violations) == 0 }

// Summary is one line: counts and violations by kind.
func (r Result) Summary() string {
	return fmt.Sprintf("%d writes: %d acknowledged, %d refused, %d unknown (%d applied, %d not); lost %d, duplicated %d, refused yet applied %d, two writers %d",
		r.Ops, r.OK, r.Errors, r.Unknown, r.UnknownApplied, r.UnknownAbsent, r.LostN, r.DuplicateN, r.ErrorAppliedN, r.TwoWritersN)
}

// Mark is a point of the run's timeline other than a write: a fault, a
// heal, a promotion.
type Mark struct {
	At   time.Time
	What string
}

// Slice renders the history within window of at: the marks and the writes
// invoked or answered then, in time order, for a failure report.
func Slice(ops []Op, marks []Mark, at time.Time, window time.Duration) string {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	in := func(t time.Time) bool { return !t.Before(at.Add(-window)) && !t.After(at.Add(window)) }
	for _, m := range marks {
		if in(m.At) {
			lines = append(lines, line{m.At, "== " + m.What})
		}
	}
	for _, o := range ops {
		if in(o.Invoked) || in(o.Completed) {
			lines = append(lines, line{o.Invoked, fmt.Sprintf("   %s %s %s by %s, answered %s (+%s)", o.Path, o.ID, o.Outcome, member(o.Member),
				o.Completed.Format("15:04:05.000"), o.Completed.Sub(o.Invoked).Round(time.Millisecond))})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s\n", l.at.Format("15:04:05.000"), l.text)
	}
	return b.String()
}

// StaleRead: a read from a replica missed a write acknowledged longer
// than the lag bound before the read began.
const StaleRead = "stale-read"

// SeqWrite is an acknowledged write of the sequence writer: each write
// carries a number higher than every one before it.
type SeqWrite struct {
	Seq   int64
	Acked time.Time
}

// Read is one read on a reader endpoint: the highest sequence number it
// saw.
type Read struct {
	Session string
	Invoked time.Time
	Seen    int64
	Member  string
}

// CheckReads finds the reads that saw less than every write acknowledged
// more than bound before they began. Within the bound a read may go back
// (another replica, further behind); beyond it, not.
func CheckReads(reads []Read, writes []SeqWrite, bound time.Duration) []Violation {
	ws := append([]SeqWrite(nil), writes...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].Acked.Before(ws[j].Acked) })
	// floor[i]: the highest sequence among ws[:i+1].
	floor := make([]int64, len(ws))
	for i, w := range ws {
		floor[i] = w.Seq
		if i > 0 && floor[i-1] > w.Seq {
			floor[i] = floor[i-1]
		}
	}
	var out []Violation
	for _, r := range reads {
		cutoff := r.Invoked.Add(-bound)
		n := sort.Search(len(ws), func(i int) bool { return ws[i].Acked.After(cutoff) })
		if n == 0 || r.Seen >= floor[n-1] {
			continue
		}
		out = append(out, Violation{Kind: StaleRead, Path: "reader", ID: r.Session, At: r.Invoked,
			Detail: fmt.Sprintf("%s saw up to %d; %d was acknowledged more than %s before", member(r.Member), r.Seen, floor[n-1], bound)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
