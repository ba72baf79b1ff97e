package proxy

import "testing"

func TestCommitOutcome(t *testing.T) {
	a1 := serverIncarnation{member: "home-a", startedUS: 1000}
	a2 := serverIncarnation{member: "home-a", startedUS: 2000} // home-a restarted
	b := serverIncarnation{member: "home-b", startedUS: 1500}
	for _, tt := range []struct {
		name      string
		xid       uint64
		status    string
		statusErr bool
		old, cur  serverIncarnation
		first     uint64
		started   int64
		want      outcome
	}{
		{"aborted on the new primary", 900, "aborted", false, a1, b, 800, 1500, outcomeRolledBack},
		{"in progress (never finished)", 900, "in progress", false, a1, b, 800, 1500, outcomeRolledBack},
		{"id in the new primary's future", 900, "", true, a1, b, 800, 1500, outcomeRolledBack},
		{"replayed commit on the new primary", 700, "committed", false, a1, b, 800, 1500, outcomeCommitted},
		// The bug this guards against: the old primary's id never reached
		// the new one, which handed it out again and committed that.
		{"id handed out again by the new primary", 850, "committed", false, a1, b, 800, 1500, outcomeReused},
		{"id handed out again, first id unknown", 850, "committed", false, a1, b, 0, 0, outcomeUnknown},
		{"report of an earlier run of the new primary", 700, "committed", false, a1, b, 800, 1400, outcomeUnknown},
		{"same server process, connection lost", 850, "committed", false, a1, a1, 800, 1000, outcomeCommitted},
		{"same server process, no report", 850, "committed", false, a1, a1, 0, 0, outcomeCommitted},
		{"same member restarted, replayed", 700, "committed", false, a1, a2, 800, 2000, outcomeCommitted},
		{"same member restarted, id handed out again", 850, "committed", false, a1, a2, 800, 2000, outcomeReused},
		{"old start unknown", 850, "committed", false, serverIncarnation{member: "home-a"}, a1, 800, 1000, outcomeReused},
		{"start unknown on the new server", 700, "committed", false, a1, serverIncarnation{member: "home-b"}, 800, 1500, outcomeUnknown},
	} {
		if got := commitOutcome(tt.xid, tt.status, tt.statusErr, tt.old, tt.cur, tt.first, tt.started); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
