package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/holdfast/holdfast/internal/wait"
)

// Fault is a network fault a drill asks for: `holdfast up` carries it out
// on the fault links in front of the member (see internal/faultlink).
type Fault struct {
	// Mode is one of FaultModes.
	Mode string `json:"mode"`
	// By names who asked (the drill).
	By string `json:"by"`
	// DelayMS is the latency a FaultSlow adds each way, in milliseconds.
	DelayMS int `json:"delay_ms,omitempty"`
}

// FaultPartition cuts a member off from etcd and from every client and
// peer.
const FaultPartition = "partition"

// FaultDown crashes a member (kill -9 of its agent, its postmaster and every
// backend) and keeps it down, unreachable, until the fault is cleared; then
// its agent starts again.
const FaultDown = "down"

// FaultPartitionEtcd cuts a member's agent off from etcd only: clients and
// peers still reach its PostgreSQL.
const FaultPartitionEtcd = "partition-etcd"

// FaultOneWayFrom holds everything the member sends (its PostgreSQL's
// answers and WAL, its agent's requests to etcd): nobody hears it, and it
// hears everyone.
const FaultOneWayFrom = "one-way-from"

// FaultOneWayTo holds everything sent to the member (queries and replicas'
// feedback to its PostgreSQL, etcd's answers to its agent): it hears
// nobody, and everyone hears it.
const FaultOneWayTo = "one-way-to"

// FaultSlow adds DelayMS of latency each way to every link of the member.
const FaultSlow = "slow"

// FaultModes are the modes a fault may have.
var FaultModes = []string{FaultPartition, FaultDown, FaultPartitionEtcd, FaultOneWayFrom, FaultOneWayTo, FaultSlow}

// Validate says what is wrong with f, naming the field.
func (f Fault) Validate() error {
	if !slices.Contains(FaultModes, f.Mode) {
		return fmt.Errorf("mode: %q is not one of %v", f.Mode, FaultModes)
	}
	if f.Mode == FaultSlow && (f.DelayMS <= 0 || f.DelayMS > 60_000) {
		return fmt.Errorf("delay_ms: %d; a slow link needs 1 to 60000 ms", f.DelayMS)
	}
	if f.Mode != FaultSlow && f.DelayMS != 0 {
		return fmt.Errorf("delay_ms: only a %q fault has a delay", FaultSlow)
	}
	return nil
}

func (s *Store) faultsPrefix() string { return s.prefix + "faults/" }

// SetFault asks for fault f on member, under lease: when the asker dies the
// lease expires and the fault heals by itself.
func (s *Store) SetFault(ctx context.Context, member string, f Fault, lease LeaseID) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("set fault on %s: %w", member, err)
	}
	return s.putNamedJSON(ctx, "set fault", s.faultsPrefix(), member, f, clientv3.WithLease(clientv3.LeaseID(lease)))
}

// ClearFault heals member.
func (s *Store) ClearFault(ctx context.Context, member string) error {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.cli.Delete(ctx, s.faultsPrefix()+member)
	return wrapErr(ctx, "clear fault", err)
}

// Faults reads the faults asked for, by member, and the revision read at.
func (s *Store) Faults(ctx context.Context) (map[string]Fault, int64, error) {
	ctx, cancel, err := s.call(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.faultsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, wrapErr(ctx, "get faults", err)
	}
	out := map[string]Fault{}
	for _, kv := range resp.Kvs {
		member := strings.TrimPrefix(string(kv.Key), s.faultsPrefix())
		var f Fault
		if err := json.Unmarshal(kv.Value, &f); err != nil {
			s.log.Warn("skipping undecodable fault", "key", string(kv.Key), "err", err)
			continue
		}
		if err := f.Validate(); err != nil {
			s.log.Warn("skipping an invalid fault", "key", string(kv.Key), "err", err)
			continue
		}
		out[member] = f
	}
	return out, resp.Header.Revision, nil
}

// WatchFaults sends the complete set of faults at start and after every
// change. It reads again after any watch failure, so the last set sent is
// always one the store held. The channel is closed when ctx ends or the
// Store is closed.
func (s *Store) WatchFaults(ctx context.Context) <-chan map[string]Fault {
	out := make(chan map[string]Fault, 1)
	started := s.goWatch(ctx, func(ctx context.Context) {
		defer close(out)
		var bo backoff
		for ctx.Err() == nil {
			faults, rev, err := s.Faults(ctx)
			if err != nil {
				if !wait.Sleep(ctx, bo.delay()) {
					return
				}
				continue
			}
			bo.reset()
			select {
			case out <- faults:
			case <-ctx.Done():
				return
			}
			// Wait for the next change, then read the whole set again.
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := s.cli.Watch(wctx, s.faultsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			select {
			case <-wch:
			case <-ctx.Done():
			}
			cancel()
		}
	})
	if !started {
		close(out)
	}
	return out
}
