package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestEphemeralLow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"32768\t60999\n", 32768},
		{"49152 65535", 49152},
		{"", defaultEphemeralLow},
		{"x y", defaultEphemeralLow},
		{"0 10", defaultEphemeralLow},
		{"70000 80000", defaultEphemeralLow},
	} {
		if got := ephemeralLow(tc.in); got != tc.want {
			t.Errorf("ephemeralLow(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestPickIsBelowEphemeralRangeAndNeverRepeats(t *testing.T) {
	high := ephemeralLow(readRange()) - 1
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		if high-lowest >= 1000 && (p < lowest || p > high) {
			t.Fatalf("port %d outside [%d, %d]", p, lowest, high)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

func TestFreeSeesListeners(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	if free(p) {
		t.Fatalf("port %d reported free while listening", p)
	}
	l.Close()
	if !free(p) {
		t.Fatalf("port %d reported in use after close", p)
	}
}
