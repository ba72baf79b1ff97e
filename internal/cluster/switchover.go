package cluster

import (
	"errors"
	"fmt"
	"sort"
)

// Errors returned by SwitchoverTarget; the CLI shows them as refusals.
var (
	// ErrUnknownMember: the named member is not part of the cluster or its
	// agent is not running.
	ErrUnknownMember = errors.New("unknown member")
	// ErrNotHealthy: the member is not a running, streaming replica.
	ErrNotHealthy = errors.New("member is not a healthy replica")
	// ErrLagging: the member is too far behind the primary.
	ErrLagging = errors.New("member is lagging")
	// ErrNoCandidate: no member qualifies.
	ErrNoCandidate = errors.New("no healthy replica to switch over to")
)

// SwitchoverTarget validates (or, when to is empty, picks) the member a
// planned switchover from the primary `from` hands leadership to: a live,
// running, streaming replica of the same region no more than maxLag bytes
// behind the primary.
func SwitchoverTarget(t Topology, members map[string]Member, from, to string, maxLag int64) (string, error) {
	primary, ok := members[from]
	if !ok {
		return "", fmt.Errorf("primary %s: %w", from, ErrUnknownMember)
	}
	check := func(name string) error {
		m, ok := members[name]
		if !ok {
			return fmt.Errorf("%s: %w (no live agent reports it)", name, ErrUnknownMember)
		}
		if name == from {
			return fmt.Errorf("%s is already the primary: %w", name, ErrNotHealthy)
		}
		if m.Region != primary.Region {
			return fmt.Errorf("%s is in region %s, not %s: %w", name, m.Region, primary.Region, ErrNotHealthy)
		}
		if m.Role != RoleReplica || m.State != StateRunning || !m.Streaming {
			return fmt.Errorf("%s is %s/%s, streaming=%v: %w", name, m.Role, m.State, m.Streaming, ErrNotHealthy)
		}
		if lag := Lag(primary.LSN, m.LSN); lag > maxLag {
			return fmt.Errorf("%s is %d bytes behind (limit %d): %w", name, lag, maxLag, ErrLagging)
		}
		return nil
	}
	if to != "" {
		if err := check(to); err != nil {
			return "", err
		}
		return to, nil
	}
	var names []string
	for n := range members {
		if check(n) == nil {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", ErrNoCandidate
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := members[names[i]], members[names[j]]
		// Prefer the synchronous set, then the most WAL, then the name.
		if sa, sb := t.InSyncSet(a.Name), t.InSyncSet(b.Name); sa != sb {
			return sa
		}
		if a.LSN != b.LSN {
			return a.LSN > b.LSN
		}
		return a.Name < b.Name
	})
	return names[0], nil
}

// RegionSwitchoverTarget validates the target of a region switchover from
// the primary `from`: the member `to` of `region` (its standby leader), a
// live, running, streaming replica no more than maxLag bytes behind.
func RegionSwitchoverTarget(members map[string]Member, from, to, region string, maxLag int64) (string, error) {
	primary, ok := members[from]
	if !ok {
		return "", fmt.Errorf("primary %s: %w", from, ErrUnknownMember)
	}
	m, ok := members[to]
	switch {
	case to == "":
		return "", fmt.Errorf("region %s has no standby leader: %w", region, ErrNoCandidate)
	case !ok:
		return "", fmt.Errorf("%s: %w (no live agent reports it)", to, ErrUnknownMember)
	case m.Region != region:
		return "", fmt.Errorf("%s is in region %s, not %s: %w", to, m.Region, region, ErrNotHealthy)
	case m.Role != RoleReplica || m.State != StateRunning || !m.Streaming:
		return "", fmt.Errorf("%s is %s/%s, streaming=%v: %w", to, m.Role, m.State, m.Streaming, ErrNotHealthy)
	}
	if lag := Lag(primary.LSN, m.LSN); lag > maxLag {
		return "", fmt.Errorf("%s is %d bytes behind (limit %d): %w", to, lag, maxLag, ErrLagging)
	}
	return to, nil
}

// Lag is how many bytes `replica` is behind `primary` (0 if ahead).
func Lag(primary, replica LSN) int64 {
	if replica >= primary {
		return 0
	}
	return int64(primary - replica)
}

// SyncStandbys returns the members the primary should list in
// synchronous_standby_names and how many must confirm (the n of ANY n).
//   - quorum: the healthy replicas; if fewer than count are healthy, every
//     other member, so that commits wait rather than go unconfirmed.
//   - relaxed: the healthy replicas, possibly none (then commits do not wait).
//   - off: none.
//
// healthy and others are names of other members of the primary region.
func SyncStandbys(mode string, count int, healthy, others []string) ([]string, int) {
	if count < 1 {
		count = 1
	}
	sorted := func(s []string) []string {
		out := append([]string(nil), s...)
		sort.Strings(out)
		return out
	}
	switch mode {
	case SyncOff:
		return nil, 0
	case SyncRelaxed:
		if len(healthy) == 0 {
			return nil, 0
		}
		return sorted(healthy), min(count, len(healthy))
	default:
		if len(healthy) < count {
			return sorted(others), count
		}
		return sorted(healthy), count
	}
}
