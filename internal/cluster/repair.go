package cluster

import "time"

// Repairs of a replica that does not stream from its upstream are decided
// here; the agent carries them out (internal/agent/repair.go).

// Repair is what a replica does about its data directory.
type Repair int

const (
	// RepairNone: keep following (the upstream may still start streaming).
	RepairNone Repair = iota
	// RepairRewind: pg_rewind onto the upstream's timeline.
	RepairRewind
	// RepairCopy: a fresh copy, made beside the data directory and swapped
	// in once complete.
	RepairCopy
)

func (r Repair) String() string {
	switch r {
	case RepairRewind:
		return "rewind"
	case RepairCopy:
		return "copy"
	}
	return "none"
}

// NotStreamingAfter is how long a replica pointed at its upstream may go
// without streaming before it is repaired: it is assumed to have diverged.
const NotStreamingAfter = 10 * time.Second

// Follower is what a replica following its upstream knows, for
// NotStreamingRepair.
type Follower struct {
	Now time.Time
	// FollowSince is when it was pointed at the upstream, or last seen
	// streaming from it.
	FollowSince time.Time
	// Consistent: PostgreSQL has answered since its start. Before that it
	// replays its own WAL, which may take up to StartTimeout.
	Consistent   bool
	StartTimeout time.Duration
	// UpstreamRunning: the upstream reports itself running.
	UpstreamRunning bool
	// CanRewind: a running member to rewind from is known (the upstream
	// if it is a running primary, else the primary).
	CanRewind bool
	// RewoundAt is when a rewind last succeeded, StreamedAt when the
	// replica was last seen streaming (zero: never).
	RewoundAt, StreamedAt time.Time
}

// NotStreamingRepair decides the repair of a replica that is not
// streaming, and the bound it went past (0 with RepairNone):
//   - within NotStreamingAfter (or StartTimeout, while not consistent) of
//     FollowSince, or with nothing to rewind from: none;
//   - when the last rewind, within the bound and a minute, brought nothing
//     to stream while the upstream runs: a copy. What the replica needs is
//     not in the upstream's WAL (a standby region's leader copied afresh
//     keeps WAL from its copy on only), and another rewind would find
//     nothing to do, again and again;
//   - else a rewind.
func NotStreamingRepair(f Follower) (Repair, time.Duration) {
	bound := NotStreamingAfter
	if !f.Consistent {
		bound = max(bound, f.StartTimeout)
	}
	if f.Now.Sub(f.FollowSince) <= bound || !f.CanRewind {
		return RepairNone, 0
	}
	if f.UpstreamRunning && !f.RewoundAt.IsZero() && f.RewoundAt.After(f.StreamedAt) && f.Now.Sub(f.RewoundAt) < bound+time.Minute {
		return RepairCopy, bound
	}
	return RepairRewind, bound
}

// LeaseValid says whether an agent's lease is certainly alive for at least
// margin (failover.demote_margin): validUntil is measured from when the
// renewal was sent, so it never overestimates the lease's life in etcd. A
// leading member whose lease is not valid fences itself, stopping
// PostgreSQL at once (invariant 1: a member accepts writes only while it
// holds the key).
func LeaseValid(now, validUntil time.Time, margin time.Duration) bool {
	return now.Add(margin).Before(validUntil)
}
