package drill

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// rec is a request sent at sent ms that took took ms.
func rec(id string, sent, took int, o Outcome) Record {
	return Record{ID: id, Sent: at(sent), Done: at(sent + took), Outcome: o}
}

func TestSummarize(t *testing.T) {
	w := Window{Start: at(0), End: at(10000), Fault: at(4000)}
	tests := []struct {
		name    string
		records []Record
		stored  map[string]int
		check   func(t *testing.T, r Report)
	}{
		{
			name: "a failover with a gap, an error and an unknown",
			records: []Record{
				rec("a", 1000, 10, OK), rec("b", 3990, 10, OK), // last success before the fault at 4000
				rec("c", 4100, 50, Error), rec("d", 4200, 5000, Unknown),
				rec("e", 5000, 300, OK), // first success after the fault: 5300
				rec("f", 9000, 20, OK),
			},
			stored: map[string]int{"a": 1, "b": 1, "e": 1, "f": 1, "d": 1},
			check: func(t *testing.T, r Report) {
				if r.Requests != 6 || r.OK != 4 || r.Errors != 1 || r.Unknown != 1 || r.LostAcked != 0 || r.Duplicates != 0 {
					t.Fatalf("counts %+v", r)
				}
				// Successes at 1010, 4000, 5300 and 9020 ms: gaps 1010, 2990,
				// 1300, 3720 and 980 (to the end of the window).
				if r.DowntimeMS != 3720 {
					t.Fatalf("downtime %d, want 3720", r.DowntimeMS)
				}
				if r.RecoveryMS != 1300 {
					t.Fatalf("recovery %d, want 1300", r.RecoveryMS)
				}
				if r.LatencyMS.Max != 300 || r.LatencyMS.P50 != 10 {
					t.Fatalf("latency %+v", r.LatencyMS)
				}
				if r.AchievedRate != 0.6 {
					t.Fatalf("achieved rate %v", r.AchievedRate)
				}
			},
		},
		{
			name:    "an acknowledged write missing and one stored twice",
			records: []Record{rec("a", 100, 10, OK), rec("b", 200, 10, OK), rec("c", 300, 10, OK)},
			stored:  map[string]int{"a": 1, "c": 2},
			check: func(t *testing.T, r Report) {
				if r.LostAcked != 1 || r.Duplicates != 1 {
					t.Fatalf("lost %d duplicates %d", r.LostAcked, r.Duplicates)
				}
			},
		},
		{
			name:    "no success after the fault",
			records: []Record{rec("a", 100, 10, OK), rec("b", 5000, 100, Error)},
			stored:  map[string]int{"a": 1},
			check: func(t *testing.T, r Report) {
				if r.RecoveryMS != -1 || r.DowntimeMS != 10000-110 {
					t.Fatalf("recovery %d downtime %d", r.RecoveryMS, r.DowntimeMS)
				}
			},
		},
		{
			name:    "no success at all",
			records: []Record{rec("a", 100, 10, Error)},
			check: func(t *testing.T, r Report) {
				if r.DowntimeMS != 10000 || r.LatencyMS != (Latency{}) {
					t.Fatalf("downtime %d latency %+v", r.DowntimeMS, r.LatencyMS)
				}
			},
		},
		{
			name: "a write in flight at the fault says nothing about recovery",
			// Sent before the fault, held by the proxy, acknowledged after;
			// the next one, sent after the fault, is the recovery.
			records: []Record{rec("a", 3900, 600, OK), rec("b", 4100, 700, OK)},
			stored:  map[string]int{"a": 1, "b": 1},
			check: func(t *testing.T, r Report) {
				if r.RecoveryMS != 800 {
					t.Fatalf("recovery %d, want 800", r.RecoveryMS)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, Summarize("kill-primary", "proxy", 1, w, tt.records, tt.stored, nil))
		})
	}
}

func TestReportJSONContract(t *testing.T) {
	w := Window{Start: at(0), End: at(1000), Fault: at(500)}
	r := Summarize("kill-primary", "proxy", 100, w, []Record{rec("a", 10, 5, OK)}, map[string]int{"a": 1},
		[]Event{{Event: "promoted", At: at(700)}, {Event: "fault", At: at(500)}})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"scenario":"kill-primary"`, `"path":"proxy"`, `"rate":100`, `"duration_s":1`, `"requests":1`, `"ok":1`,
		`"errors":0`, `"unknown":0`, `"lost_acked":0`, `"duplicates":0`, `"downtime_ms":`, `"recovery_ms":-1`,
		`"latency_ms":{"p50":5,"p99":5,"max":5}`, `"timeline":[{"event":"fault"`, `"since_fault_ms":200`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("report JSON lacks %s:\n%s", f, b)
		}
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{3}, Spread{3, 3, 3}},
		{[]float64{5, 1, 3}, Spread{1, 3, 5}},
		{[]float64{4, 1, 3, 2}, Spread{1, 2.5, 4}},
	}
	for _, tt := range tests {
		if got := SpreadOf(tt.in); got != tt.want {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestLatencyNearestRank(t *testing.T) {
	var ms []float64
	for i := 1; i <= 100; i++ {
		ms = append(ms, float64(i))
	}
	if l := latency(ms); l.P50 != 50 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("latency %+v", l)
	}
}

func TestRegionOutageTimeline(t *testing.T) {
	fault := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return fault.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(ms int, kind string) cluster.Event { return cluster.Event{Time: at(ms), Kind: kind} }
	for _, tt := range []struct {
		name              string
		events            []cluster.Event
		takeover, restore time.Time
		want              RegionOutage
	}{
		{"complete", []cluster.Event{ev(-500, cluster.EventPromoted), ev(10, "down"), ev(3100, cluster.EventCanaryActed),
			ev(3200, cluster.EventRegionFailover), ev(3400, cluster.EventPromoted), ev(9000, cluster.EventPromoted)}, at(3500), at(3450),
			RegionOutage{From: "home", To: "away", DetectedMS: 3100, PromotedMS: 3400, TakeoverMS: 3500, TrafficRestoredMS: 3450}},
		{"nothing happened", []cluster.Event{ev(-10, cluster.EventCanaryActed)}, time.Time{}, time.Time{},
			RegionOutage{From: "home", To: "away", DetectedMS: -1, PromotedMS: -1, TakeoverMS: -1, TrafficRestoredMS: -1}},
	} {
		got := RegionOutageTimeline("home", "away", fault, tt.takeover, tt.restore, tt.events)
		if *got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, *got, tt.want)
		}
	}
}
