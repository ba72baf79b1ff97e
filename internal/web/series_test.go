package web

import (
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/drill"
)

func TestSeriesBuckets(t *testing.T) {
	names := map[string]string{"port 15432": "home-a"}
	s := newSeries(3, func(m string) string {
		if n, ok := names[m]; ok {
			return n
		}
		return m
	})
	base := time.Unix(1000, 0)
	at := func(sec, ms int) time.Time {
		return base.Add(time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond)
	}
	// First close only sets the origin: second 999 closes, empty.
	if got := s.close(at(0, 100), 0); len(got) != 1 || got[0].T != 999 {
		t.Fatalf("first close: %+v", got)
	}
	for i := range 100 {
		s.add(drill.Record{Sent: at(0, 0), Done: at(0, 1+i), Outcome: drill.OK, Member: "port 15432"})
	}
	s.add(drill.Record{Sent: at(0, 0), Done: at(0, 500), Outcome: drill.OK, Member: "buffer"})
	s.add(drill.Record{Sent: at(0, 0), Done: at(0, 600), Outcome: drill.Error})
	s.add(drill.Record{Sent: at(0, 0), Done: at(0, 700), Outcome: drill.Unknown})
	s.add(drill.Record{Sent: at(0, 0), Done: at(0, 800), Outcome: drill.OK})
	got := s.close(at(1, 10), 7)
	if len(got) != 1 {
		t.Fatalf("closed %d buckets, want 1", len(got))
	}
	b := got[0]
	if b.T != 1000 || b.OK["home-a"] != 100 || b.OK["buffer"] != 1 || b.OK["?"] != 1 || b.Errors != 1 || b.Unknown != 1 || b.Waiting != 7 {
		t.Fatalf("bucket %+v", b)
	}
	// 102 latencies of 1..100, 500 and 800 ms: the 99th percentile is the 100th value.
	if b.P99MS != 500 {
		t.Fatalf("p99 %v, want 500", b.P99MS)
	}
	// A write completing in a second already closed counts in the open one.
	s.add(drill.Record{Sent: at(0, 0), Done: at(0, 900), Outcome: drill.Error})
	// Seconds without traffic give empty buckets; only keep are kept.
	got = s.close(at(4, 0), 0)
	if len(got) != 3 || got[0].T != 1001 || got[0].Errors != 1 || got[2].T != 1003 {
		t.Fatalf("gap buckets %+v", got)
	}
	all := s.buckets()
	if len(all) != 3 || all[0].T != 1001 {
		t.Fatalf("kept %+v", all)
	}
	s.reset()
	if len(s.buckets()) != 0 {
		t.Fatal("reset kept buckets")
	}
}
