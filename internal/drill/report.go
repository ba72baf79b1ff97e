// Package drill runs failover drills: it writes unique ids at a steady
// rate along one path (direct to the primary, through the proxy, or
// through the durable buffer), injects a fault, waits for recovery and for
// the buffer to drain, then reconciles what was acknowledged with what the
// database holds. This file is the pure part: from the raw records to the
// report.
package drill

import (
	"slices"
	"sort"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
)

// Outcome of one request.
type Outcome string

// Outcomes.
const (
	OK      Outcome = "ok"      // acknowledged
	Error   Outcome = "error"   // refused: known not written
	Unknown Outcome = "unknown" // no answer (timeout, connection lost): may or may not be written
)

// Record is one request of a drill.
type Record struct {
	ID      string
	Sent    time.Time
	Done    time.Time
	Outcome Outcome
	// Member answered the request, when the path tells.
	Member string
}

// Event is a point on the drill's timeline.
type Event struct {
	Event        string    `json:"event"`
	At           time.Time `json:"at"`
	SinceFaultMS int64     `json:"since_fault_ms"`
}

// Latency summarises the latencies of acknowledged requests.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Report is a drill's result: the JSON contract of `holdfast drill run`.
type Report struct {
	Scenario   string  `json:"scenario"`
	Path       string  `json:"path"`
	Rate       float64 `json:"rate"`
	DurationS  float64 `json:"duration_s"`
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Errors     int     `json:"errors"`
	Unknown    int     `json:"unknown"`
	LostAcked  int     `json:"lost_acked"`
	Duplicates int     `json:"duplicates"`
	// DowntimeMS is the longest interval without a successful write;
	// RecoveryMS is from the fault to the first success of a write sent
	// after it (-1: none): writes in flight at the fault that still
	// succeed say nothing about recovery.
	DowntimeMS int64   `json:"downtime_ms"`
	RecoveryMS int64   `json:"recovery_ms"`
	LatencyMS  Latency `json:"latency_ms"`
	Timeline   []Event `json:"timeline"`
	// AchievedRate is requests per second actually sent (a rate the
	// machine cannot sustain is reported, not hidden).
	AchievedRate float64 `json:"achieved_rate"`
	// Region is the region-outage drill's region timeline.
	Region *RegionOutage `json:"region,omitempty"`
}

// RegionOutage is what a region outage went through, in milliseconds
// since the outage (-1: did not happen).
type RegionOutage struct {
	From string `json:"from"`
	To   string `json:"to"`
	// DetectedMS: the canary decided to fail over (canary-acted).
	DetectedMS int64 `json:"detected_ms"`
	// PromotedMS: the new region's leader was promoted.
	PromotedMS int64 `json:"promoted_ms"`
	// TakeoverMS: the drill saw the new primary running.
	TakeoverMS int64 `json:"takeover_ms"`
	// TrafficRestoredMS: the first write was applied on the new primary.
	TrafficRestoredMS int64 `json:"traffic_restored_ms"`
}

// RegionOutageTimeline builds the region timeline of a region outage at
// fault from the cluster's events and the times the drill saw (zero:
// did not happen).
func RegionOutageTimeline(from, to string, fault, takeover, restored time.Time, events []cluster.Event) *RegionOutage {
	since := func(t time.Time) int64 {
		if t.IsZero() {
			return -1
		}
		return t.Sub(fault).Milliseconds()
	}
	var detected, promoted time.Time
	for _, e := range events {
		if e.Time.Before(fault) {
			continue
		}
		switch e.Kind {
		case cluster.EventCanaryActed:
			if detected.IsZero() {
				detected = e.Time
			}
		case cluster.EventPromoted:
			if promoted.IsZero() {
				promoted = e.Time
			}
		}
	}
	return &RegionOutage{From: from, To: to, DetectedMS: since(detected), PromotedMS: since(promoted), TakeoverMS: since(takeover), TrafficRestoredMS: since(restored)}
}

// Window is the drill's span and its fault.
type Window struct {
	Start, End, Fault time.Time
}

// Summarize computes the report from the raw records and what the
// database holds after recovery (stored: how many rows each id has).
func Summarize(scenario, path string, rate float64, w Window, records []Record, stored map[string]int, events []Event) Report {
	r := Report{Scenario: scenario, Path: path, Rate: rate, DurationS: w.End.Sub(w.Start).Seconds(), Requests: len(records)}
	if r.DurationS > 0 {
		r.AchievedRate = float64(len(records)) / r.DurationS
	}
	var okDone, okAfterFault []time.Time
	var lat []float64
	for _, rec := range records {
		switch rec.Outcome {
		case OK:
			r.OK++
			okDone = append(okDone, rec.Done)
			if !w.Fault.IsZero() && !rec.Sent.Before(w.Fault) {
				okAfterFault = append(okAfterFault, rec.Done)
			}
			lat = append(lat, float64(rec.Done.Sub(rec.Sent).Microseconds())/1000)
			if stored[rec.ID] == 0 {
				r.LostAcked++
			}
		case Error:
			r.Errors++
		default:
			r.Unknown++
		}
	}
	for _, n := range stored {
		if n > 1 {
			r.Duplicates += n - 1
		}
	}
	r.DowntimeMS = longestGap(w.Start, w.End, okDone).Milliseconds()
	r.RecoveryMS = -1
	if len(okAfterFault) > 0 {
		r.RecoveryMS = sortedTimes(okAfterFault)[0].Sub(w.Fault).Milliseconds()
	}
	r.LatencyMS = latency(lat)
	r.Timeline = make([]Event, 0, len(events))
	for _, e := range events {
		if !w.Fault.IsZero() {
			e.SinceFaultMS = e.At.Sub(w.Fault).Milliseconds()
		}
		r.Timeline = append(r.Timeline, e)
	}
	sort.SliceStable(r.Timeline, func(i, j int) bool { return r.Timeline[i].At.Before(r.Timeline[j].At) })
	return r
}

func sortedTimes(ts []time.Time) []time.Time {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// longestGap is the longest interval within [start, end] containing no
// time of ts (the edges count: no success at all is the whole window).
func longestGap(start, end time.Time, ts []time.Time) time.Duration {
	prev, gap := start, time.Duration(0)
	for _, t := range sortedTimes(ts) {
		if t.Before(start) || t.After(end) {
			continue
		}
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return max(gap, end.Sub(prev))
}

// latency gives nearest-rank percentiles of ms.
func latency(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Latency{P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// Spread is the min, median and max of a figure over repeated drills.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// SpreadOf summarises values (the median of an even count is the mean of
// the middle two).
func SpreadOf(values []float64) Spread {
	if len(values) == 0 {
		return Spread{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}
