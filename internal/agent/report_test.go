package agent

import (
	"testing"

	"github.com/holdfast/holdfast/internal/cluster"
)

// TestReportFinal: a leaderless member's WAL position counts as its
// election report only once its receiver is stopped and the position was
// read now (a kept reading can be short of what it confirmed since).
func TestReportFinal(t *testing.T) {
	running := cluster.Local{PGRunning: true, InRecovery: true}
	for _, tt := range []struct {
		name            string
		local           cluster.Local
		detached, fresh bool
		want            bool
	}{
		{"detached, read now", running, true, true, true},
		{"detached, reading kept from before", running, true, false, false},
		{"receiver maybe still running", running, false, true, false},
		{"neither", running, false, false, false},
		{"postgres down: no candidate, says so", cluster.Local{}, false, false, true},
		{"primary without the key, read now", cluster.Local{PGRunning: true}, true, true, true},
	} {
		if got := reportFinal(tt.local, tt.detached, tt.fresh); got != tt.want {
			t.Errorf("%s: reportFinal = %v, want %v", tt.name, got, tt.want)
		}
	}
}
