package main

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestHistBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<22; us++ {
		i := histIndex(us)
		if i != prev && i != prev+1 {
			t.Fatalf("index %d for %d after %d: buckets skipped", i, us, prev)
		}
		if us > histUpper(i) || (i > 0 && us <= histUpper(i-1)) {
			t.Fatalf("%d in bucket %d, whose values are (%d, %d]", us, i, histUpper(i-1), histUpper(i))
		}
		prev = i
	}
}

func TestHistQuantile(t *testing.T) {
	h := newHist()
	var all []uint64
	for range 100000 {
		v := uint64(rand.ExpFloat64() * 2000)
		all = append(all, v)
		h.add(v)
	}
	// Through the wire form, as the load processes send it.
	back, err := histFromJSON(h.toJSON())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := all[int(q*float64(len(all)))-1]
		got := back.quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/64)+1 {
			t.Errorf("q%v: %d, exact %d", q, got, exact)
		}
	}
}

func TestKeySum(t *testing.T) {
	var a, b keySum
	for i := range 1000 {
		g := uuid.New()
		v := guidBits(g)
		// What sumSQL takes: the first 15 hex digits of the text form.
		hex := strings.ReplaceAll(g.String(), "-", "")[:15]
		if n, err := strconv.ParseUint(hex, 16, 64); err != nil || n != v {
			t.Fatalf("guidBits(%s) = %x, want %s", g, v, hex)
		}
		if i%2 == 0 {
			a.add(v)
		} else {
			b.add(v)
		}
	}
	a.merge(b)
	back, err := parseKeySum(a.String())
	if err != nil || back != a {
		t.Fatalf("round trip of %s: %v, %v", a, back, err)
	}
	if a.hi == 0 {
		t.Fatalf("1000 sums of 60-bit values must overflow 64 bits: %s", a)
	}
	// Carries: adding the max value twice.
	var c keySum
	c.add(^uint64(0))
	c.add(^uint64(0))
	if c.String() != "36893488147419103230" {
		t.Fatalf("2*(2^64-1) = %s", c)
	}
}
