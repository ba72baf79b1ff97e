package web

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/drill"
)

// Bucket is one second of traffic: the dashboard's chart point.
type Bucket struct {
	// T is the second, Unix time.
	T int64 `json:"t"`
	// OK counts acknowledged writes by the member that answered ("buffer"
	// for the buffer path, "?" when unknown).
	OK      map[string]int `json:"ok"`
	Errors  int            `json:"errors"`
	Unknown int            `json:"unknown"`
	// Waiting is the proxy's waiting clients, sampled when the second ends.
	Waiting int64 `json:"waiting"`
	// P99MS is the 99th percentile latency of the second's acknowledged
	// writes, in milliseconds (0 without any).
	P99MS float64 `json:"p99_ms"`
}

// series keeps the last keep seconds of traffic in 1-second buckets.
// Writes are counted in the second they completed; one that completes in
// a second already closed counts in the open one.
type series struct {
	keep   int
	member func(string) string // "port 15432" -> member name

	mu     sync.Mutex
	closed []Bucket          // oldest first, at most keep
	open   map[int64]*Bucket // seconds not closed yet
	lat    map[int64][]float64
	last   int64 // the last closed second
}

func newSeries(keep int, member func(string) string) *series {
	return &series{keep: keep, member: member, open: map[int64]*Bucket{}, lat: map[int64][]float64{}}
}

// add counts one write.
func (s *series) add(r drill.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := max(r.Done.Unix(), s.last+1)
	b := s.open[sec]
	if b == nil {
		b = &Bucket{T: sec, OK: map[string]int{}}
		s.open[sec] = b
	}
	switch r.Outcome {
	case drill.OK:
		name := r.Member
		if s.member != nil {
			name = s.member(name)
		}
		if name == "" {
			name = "?"
		}
		b.OK[name]++
		s.lat[sec] = append(s.lat[sec], float64(r.Done.Sub(r.Sent).Microseconds())/1000)
	case drill.Error:
		b.Errors++
	default:
		b.Unknown++
	}
}

// close closes every second before now's and returns the buckets closed,
// oldest first: an empty bucket for a second without traffic.
func (s *series) close(now time.Time, waiting int64) []Bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	upTo := now.Unix() - 1
	if s.last == 0 {
		s.last = upTo - 1
	}
	// After a long gap (the machine slept) only the last keep seconds matter.
	from := max(s.last+1, upTo-int64(s.keep)+1)
	var out []Bucket
	for sec := from; sec <= upTo; sec++ {
		b := s.open[sec]
		if b == nil {
			b = &Bucket{T: sec, OK: map[string]int{}}
		}
		b.Waiting = waiting
		b.P99MS = p99(s.lat[sec])
		out = append(out, *b)
	}
	for sec := range s.open {
		if sec <= upTo {
			delete(s.open, sec)
			delete(s.lat, sec)
		}
	}
	if upTo > s.last {
		s.last = upTo
	}
	s.closed = append(s.closed, out...)
	if n := len(s.closed) - s.keep; n > 0 {
		s.closed = slices.Delete(s.closed, 0, n)
	}
	return out
}

// buckets returns the closed buckets, oldest first.
func (s *series) buckets() []Bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.closed)
}

// reset forgets everything.
func (s *series) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = nil
	s.open = map[int64]*Bucket{}
	s.lat = map[int64][]float64{}
}

func p99(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	return v[min(len(v)-1, int(float64(len(v))*0.99))]
}
