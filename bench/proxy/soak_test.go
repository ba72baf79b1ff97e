package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseProm(t *testing.T) {
	m, err := parseProm(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 52
holdfast_proxy_client_connections{endpoint="reader"} 0
holdfast_proxy_client_connections{endpoint="writer"} 22
holdfast_proxy_client_connections_ended_total{cause="client_eof",endpoint="writer"} 263
holdfast_proxy_client_connections_ended_total{cause="terminate",endpoint="writer"} 99
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want []string
		v    float64
	}{
		{"go_goroutines", nil, 52},
		{"holdfast_proxy_client_connections", []string{"endpoint", "writer"}, 22},
		{"holdfast_proxy_client_connections", nil, 22},
		{"holdfast_proxy_client_connections_ended_total", nil, 362},
		{"holdfast_proxy_client_connections_ended_total", []string{"cause", "terminate"}, 99},
		{"holdfast_proxy_goroutines", nil, 0},
	} {
		if got := m.sum(c.name, c.want...); got != c.v {
			t.Errorf("sum(%s, %v) = %v, want %v", c.name, c.want, got, c.v)
		}
	}
	if _, err := parseProm(strings.NewReader("go_goroutines x\n")); err == nil {
		t.Error("a bad value was accepted")
	}
}

func TestSoakFlatness(t *testing.T) {
	samples := func(grow float64) []soakSample {
		var out []soakSample
		for i := 0; i < 12; i++ {
			f := 1 + grow*float64(i)
			out = append(out, soakSample{At: time.Duration(i) * 10 * time.Second, LatencyMS: 0.3 * f,
				Goroutines: 50 * f, FDs: int(40 * f), RSSKiB: int64(40 * 1024 * f)})
		}
		return out
	}
	s := &soak{o: soakOptions{warmup: 20 * time.Second}}
	s.samples = samples(0)
	for _, c := range s.flatness() {
		if !c.ok {
			t.Errorf("flat series judged growing: %+v", c)
		}
	}
	s.samples = samples(0.5) // x5.5 by the end
	for _, c := range s.flatness() {
		if c.ok {
			t.Errorf("growing series judged flat: %+v", c)
		}
	}
	s.samples = samples(0)[:7] // 5 after the warm-up
	if s.flatness() != nil {
		t.Error("judged with fewer than six samples after the warm-up")
	}
}
