package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Fault is a kind of fault the nemesis injects. Targets are named by role
// (the primary, a replica, an etcd member...) and resolved when the fault
// starts, since the primary moves.
type Fault string

// Faults, by layer.
const (
	KillPostmaster  Fault = "kill-postmaster"  // kill -9 of the primary's postmaster
	KillNode        Fault = "kill-node"        // kill -9 of the primary's agent and postmaster
	PauseNode       Fault = "pause-node"       // SIGSTOP of the primary's agent and postmaster, SIGCONT at the heal
	PausePostmaster Fault = "pause-postmaster" // SIGSTOP of the postmaster alone: its backends serve on
	KillReplica     Fault = "kill-replica"     // kill -9 of a replica's agent and postmaster
	// Partitions (lab hosts in network namespaces).
	PartitionPrimary         Fault = "partition-primary"          // the primary from every other host
	PartitionPrimaryEtcd     Fault = "partition-primary-etcd"     // the primary from etcd only
	PartitionPrimaryReplicas Fault = "partition-primary-replicas" // the primary from its replicas only
	OneWayFromPrimary        Fault = "one-way-from-primary"       // nobody hears the primary; it hears everyone
	OneWayToPrimary          Fault = "one-way-to-primary"         // the primary hears nobody; everyone hears it
	SlowPrimary              Fault = "slow-primary"               // the primary's link slowed
	// Other components.
	KillEtcd  Fault = "kill-etcd"  // kill of one etcd member
	PauseEtcd Fault = "pause-etcd" // SIGSTOP of one etcd member
	KillNATS  Fault = "kill-nats"  // kill of the NATS server
	KillProxy Fault = "kill-proxy" // kill of the proxy
	KillAPI   Fault = "kill-api"   // kill of the api server
)

// Process faults need no lab hosts; partition faults do.
var (
	ProcessFaults   = []Fault{KillPostmaster, KillNode, PauseNode, PausePostmaster, KillReplica, KillEtcd, PauseEtcd, KillNATS, KillProxy, KillAPI}
	PartitionFaults = []Fault{PartitionPrimary, PartitionPrimaryEtcd, PartitionPrimaryReplicas, OneWayFromPrimary, OneWayToPrimary, SlowPrimary}
)

// instant faults end when injected (a kill: the process is restarted by
// its supervisor); the others hold until their heal.
var instant = map[Fault]bool{KillPostmaster: true, KillNode: true, KillReplica: true, KillEtcd: true, KillNATS: true, KillProxy: true, KillAPI: true}

// Step is one fault of a plan: injected At after the start, healed Hold
// later (0 for an instant fault).
type Step struct {
	N     int           `json:"n"` // 1-based
	At    time.Duration `json:"at"`
	Fault Fault         `json:"fault"`
	Hold  time.Duration `json:"hold"`
}

func (s Step) String() string {
	if s.Hold == 0 {
		return fmt.Sprintf("#%d +%s %s", s.N, s.At, s.Fault)
	}
	return fmt.Sprintf("#%d +%s %s for %s", s.N, s.At, s.Fault, s.Hold)
}

// PlanConfig shapes a plan.
type PlanConfig struct {
	Seed   uint64
	Faults int
	Kinds  []Fault
	// Every is the mean gap between two faults (each gap is drawn between
	// half and one and a half of it).
	Every time.Duration
	// MinHold and MaxHold bound how long a lasting fault holds.
	MinHold, MaxHold time.Duration
	// MaxActive bounds the faults in place at once (at least 1): a new
	// fault may start while older ones hold, up to this many.
	MaxActive int
}

// Validate names the first field that is wrong.
func (c PlanConfig) Validate() error {
	switch {
	case c.Faults < 1:
		return fmt.Errorf("faults: %d, at least 1", c.Faults)
	case len(c.Kinds) == 0:
		return fmt.Errorf("kinds: none")
	case c.Every <= 0:
		return fmt.Errorf("every: %s, must be positive", c.Every)
	case c.MinHold <= 0 || c.MaxHold < c.MinHold:
		return fmt.Errorf("hold: %s to %s, must be positive and in order", c.MinHold, c.MaxHold)
	case c.MaxActive < 1:
		return fmt.Errorf("max active: %d, at least 1", c.MaxActive)
	}
	for _, k := range c.Kinds {
		if !known(k) {
			return fmt.Errorf("kinds: unknown fault %q", k)
		}
	}
	return nil
}

func known(f Fault) bool {
	return slices.Contains(ProcessFaults, f) || slices.Contains(PartitionFaults, f)
}

// ParseFaults reads a comma-separated list of fault kinds.
func ParseFaults(s string) ([]Fault, error) {
	var out []Fault
	for _, p := range strings.Split(s, ",") {
		f := Fault(strings.TrimSpace(p))
		if f == "" {
			continue
		}
		if !known(f) {
			return nil, fmt.Errorf("unknown fault %q", f)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fault in %q", s)
	}
	return out, nil
}

// Plan draws a schedule from the seed: the same configuration gives the
// same plan, so a failing run can be replayed. Kinds are drawn at random;
// a lasting fault that would exceed MaxActive faults in place starts once
// the earliest of them heals.
func Plan(c PlanConfig) ([]Step, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x686f6c6466617374))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	var steps []Step
	var heals []time.Duration // ends of the lasting faults in place
	at := time.Duration(0)
	for i := range c.Faults {
		at += between(c.Every/2, c.Every+c.Every/2)
		f := c.Kinds[rng.IntN(len(c.Kinds))]
		// Faults in place at `at`: drop the healed ones; wait for a slot.
		live := heals[:0]
		for _, h := range heals {
			if h > at {
				live = append(live, h)
			}
		}
		heals = live
		if len(heals) >= c.MaxActive {
			sort.Slice(heals, func(i, j int) bool { return heals[i] < heals[j] })
			at = heals[len(heals)-c.MaxActive]
			heals = heals[len(heals)-c.MaxActive+1:]
		}
		s := Step{N: i + 1, At: at, Fault: f}
		if !instant[f] {
			s.Hold = between(c.MinHold, c.MaxHold)
			heals = append(heals, at+s.Hold)
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// Active returns how many lasting faults of steps are in place at t.
func Active(steps []Step, t time.Duration) int {
	n := 0
	for _, s := range steps {
		if s.Hold > 0 && s.At <= t && t < s.At+s.Hold {
			n++
		}
	}
	return n
}
