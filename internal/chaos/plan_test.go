package chaos

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func testPlanConfig(seed uint64) PlanConfig {
	return PlanConfig{Seed: seed, Faults: 1000, Kinds: append(append([]Fault(nil), ProcessFaults...), PartitionFaults...),
		Every: 4 * time.Second, MinHold: 2 * time.Second, MaxHold: 20 * time.Second, MaxActive: 2}
}

func TestPlanReplays(t *testing.T) {
	a, err := Plan(testPlanConfig(7))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Plan(testPlanConfig(7))
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two plans")
	}
	c, _ := Plan(testPlanConfig(8))
	if reflect.DeepEqual(a, c) {
		t.Fatal("two seeds gave the same plan")
	}
}

func TestPlanShape(t *testing.T) {
	for _, maxActive := range []int{1, 2, 3} {
		cfg := testPlanConfig(uint64(40 + maxActive))
		cfg.MaxActive = maxActive
		steps, err := Plan(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != cfg.Faults {
			t.Fatalf("%d steps, want %d", len(steps), cfg.Faults)
		}
		seen := map[Fault]int{}
		overlapped := false
		for i, s := range steps {
			seen[s.Fault]++
			if s.N != i+1 || (i > 0 && s.At < steps[i-1].At) {
				t.Fatalf("step %d out of order: %v after %v", i, s, steps[i-1])
			}
			if instant[s.Fault] != (s.Hold == 0) || (s.Hold != 0 && (s.Hold < cfg.MinHold || s.Hold > cfg.MaxHold)) {
				t.Fatalf("step %v: hold out of bounds", s)
			}
			// Faults in place right after this one starts.
			if n := Active(steps[:i+1], s.At); n > maxActive {
				t.Fatalf("max active %d: %d faults in place at %v", maxActive, n, s)
			} else if n > 1 {
				overlapped = true
			}
		}
		if len(seen) != len(cfg.Kinds) {
			t.Fatalf("%d kinds drawn of %d: %v", len(seen), len(cfg.Kinds), seen)
		}
		if maxActive > 1 && !overlapped {
			t.Fatalf("max active %d: no faults ever overlapped", maxActive)
		}
	}
}

func TestPlanConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*PlanConfig)
		want string
	}{
		{"no faults", func(c *PlanConfig) { c.Faults = 0 }, "faults"},
		{"no kinds", func(c *PlanConfig) { c.Kinds = nil }, "kinds"},
		{"unknown kind", func(c *PlanConfig) { c.Kinds = []Fault{"drop-table"} }, "kinds"},
		{"zero gap", func(c *PlanConfig) { c.Every = 0 }, "every"},
		{"holds reversed", func(c *PlanConfig) { c.MinHold, c.MaxHold = 5*time.Second, time.Second }, "hold"},
		{"no slot", func(c *PlanConfig) { c.MaxActive = 0 }, "max active"},
	}
	for _, c := range cases {
		cfg := testPlanConfig(1)
		c.mod(&cfg)
		if _, err := Plan(cfg); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
}

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults("kill-node, pause-node,,partition-primary")
	if err != nil || !reflect.DeepEqual(got, []Fault{KillNode, PauseNode, PartitionPrimary}) {
		t.Fatalf("%v, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "kill-node,format-disk"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}
