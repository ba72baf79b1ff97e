package buffer

import "testing"

func TestJudge(t *testing.T) {
	at := Position{Timeline: 3, LSN: 1000}
	for _, tt := range []struct {
		name string
		r    Replication
		want regionVerdict
	}{
		{"no standby region", Replication{PrimaryTimeline: 3}, verdictAck},
		{"received", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {3, 1000}}}, verdictAck},
		{"received more", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {3, 5000}}}, verdictAck},
		{"not yet", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {3, 999}}}, verdictWait},
		{"one of two regions", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {3, 1000}, "far": {3, 10}}}, verdictWait},
		{"leader without a report", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {}}}, verdictWait},
		{"primary unknown meanwhile", Replication{Standbys: map[string]Position{"away": {3, 10}}}, verdictWait},
		// A region failover under way: the new primary region's leader has
		// not promoted yet and the old region has no leader any more.
		{"primary unknown, no standby region", Replication{}, verdictWait},
		{"primary unknown, standby had it", Replication{Standbys: map[string]Position{"away": {3, 5000}}}, verdictWait},
		{"primary report older than the commit", Replication{PrimaryTimeline: 2, Standbys: map[string]Position{"away": {3, 5000}}}, verdictWait},
		// The standby region took over (or an in-region failover moved the
		// timeline) before it had the batch: apply it again there.
		{"primary moved on", Replication{PrimaryTimeline: 4, Standbys: map[string]Position{"home": {4, 9000}}}, verdictRedeliver},
		{"standby on a later timeline only", Replication{PrimaryTimeline: 4, Standbys: map[string]Position{"away": {4, 9000}}}, verdictRedeliver},
		{"new primary region, old one has no leader", Replication{PrimaryTimeline: 4}, verdictRedeliver},
		{"standby had it before the primary moved", Replication{PrimaryTimeline: 4, Standbys: map[string]Position{"away": {3, 5000}}}, verdictRedeliver},
		{"standby on an older timeline", Replication{PrimaryTimeline: 3, Standbys: map[string]Position{"away": {2, 9000}}}, verdictWait},
	} {
		if got := judge(at, tt.r); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
