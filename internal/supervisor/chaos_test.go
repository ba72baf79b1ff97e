package supervisor_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/chaos"
	"github.com/holdfast/holdfast/internal/drill"
)

// TestChaos is the chaos run of make chaos (issue 19): 100 faults drawn from every
// fault a loopback cluster supports, overlapping (up to two lasting ones at
// once), about 3 s apart, under writes on the direct, proxy and buffer
// paths; then every acknowledged write is reconciled and the cluster must
// be healthy again. The seed is drawn from the clock and printed; replay a
// failure with CHAOS_SEED=<seed> (CHAOS_FAULTS changes
// the count).
func TestChaos(t *testing.T) {
	if os.Getenv("CHAOS") == "" {
		// Out of make test until several runs in a row are clean (one of
		// the first two stalled the cluster: see docs/chaos.md).
		t.Skip("the 100-fault chaos run: make chaos (CHAOS=1)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	faults := 100
	if s := os.Getenv("CHAOS_FAULTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("CHAOS_FAULTS=%q: a positive count", s)
		}
		faults = v
	}
	t.Logf("chaos seed %d, %d faults (replay: CHAOS=1 CHAOS_SEED=%d CHAOS_FAULTS=%d go test -race -run TestChaos ./internal/supervisor)", seed, faults, seed, faults)

	h := startCluster(t)
	token, err := api.ReadToken(h.cfg.API.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &drill.Runner{Store: h.sup.Store(), Cfg: h.cfg, AdminToken: token}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := r.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	plan := chaos.PlanConfig{Seed: seed, Faults: faults, Kinds: chaos.LoopbackFaults, Every: 3 * time.Second,
		MinHold: 2 * time.Second, MaxHold: 6 * time.Second, MaxActive: 2}
	start := time.Now()
	rep, err := chaos.Run(ctx, r, chaos.RunConfig{Plan: plan, Rate: 30, Settle: 3 * time.Minute,
		Progress: func(s string) { t.Logf("chaos: %s", s) }})
	if err != nil {
		t.Fatalf("chaos run (seed %d): %v", seed, err)
	}
	for p, res := range rep.Paths {
		t.Logf("%s: %d writes, %d ok, %d errors, %d unknown (%d applied); lost %d, duplicated %d, refused yet applied %d, two writers %d",
			p, res.Writes, res.OK, res.Errors, res.Unknown, res.UnknownApplied, res.Lost, res.Duplicates, res.ErrorApplied, res.TwoWriters)
	}
	t.Logf("%d faults in %s; health restored %d ms after the last heal", len(rep.Faults), time.Since(start).Round(time.Second), rep.HealthRestoredMS)
	if !rep.Passed {
		for _, v := range rep.Violations {
			t.Errorf("violation: %+v", v)
		}
		if rep.HealthRestoredMS < 0 {
			t.Errorf("the cluster was not healthy within 3 minutes of the last heal")
		}
		t.Fatalf("chaos run failed (replay with CHAOS=1 CHAOS_SEED=%d CHAOS_FAULTS=%d); history around the first violation:\n%s", seed, faults, rep.History)
	}
}
