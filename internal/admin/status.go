// Package admin holds the operator's actions on a running cluster: status,
// switchover, failover, pause and resume. They talk only to etcd: agents carry
// the requests out, so the CLI needs no access to the members themselves.
package admin

import (
	"context"
	"fmt"
	"sort"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// ClusterStatus is `holdfast status --json`. Field names are a contract.
type ClusterStatus struct {
	Cluster    string         `json:"cluster"`
	Primary    string         `json:"primary"`
	Generation int64          `json:"generation"`
	Paused     bool           `json:"paused"`
	SyncMode   string         `json:"sync_mode"`
	SyncSet    []string       `json:"sync_set"`
	Members    []MemberStatus `json:"members"`
}

// MemberStatus is one row of the status.
type MemberStatus struct {
	Name      string        `json:"name"`
	Region    string        `json:"region"`
	Zone      string        `json:"zone"`
	Role      cluster.Role  `json:"role"`
	State     cluster.State `json:"state"`
	Host      string        `json:"host"`
	Port      int           `json:"port"`
	Timeline  int           `json:"timeline"`
	LSN       cluster.LSN   `json:"lsn"`
	LagBytes  int64         `json:"lag_bytes"`
	ReplayLag *int64        `json:"replay_lag_ms,omitempty"` // replicas: milliseconds, as last published; absent if unknown
	// HeartbeatLag (replicas) is the lag in milliseconds measured end to end
	// by the primary's heartbeat row, as last published; absent if unknown.
	HeartbeatLag *int64 `json:"heartbeat_lag_ms,omitempty"`
	Sync         bool   `json:"sync"`
	PID          int    `json:"pid"`
	AgentPID     int    `json:"agent_pid"`
	Generation   int64  `json:"generation"`
	Leader       bool   `json:"leader"`
	LastError    string `json:"last_error,omitempty"`
	// PromoteFailed: its promotion failed cluster.MaxPromoteFailures times
	// in a row; it stands in no election until it follows a leader again.
	PromoteFailed bool `json:"promote_failed,omitempty"`
}

// PrimaryMember is the member that holds the primary region's leader key
// and reports itself primary.
func (s ClusterStatus) PrimaryMember() (MemberStatus, bool) {
	for _, m := range s.Members {
		if m.Role == cluster.RolePrimary && m.Leader {
			return m, true
		}
	}
	return MemberStatus{}, false
}

// Status reads the cluster state from etcd.
func Status(ctx context.Context, st *store.Store, cfg config.Config) (ClusterStatus, error) {
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return ClusterStatus{}, fmt.Errorf("status: %w", err)
	}
	return BuildStatus(cfg, snap), nil
}

// BuildStatus turns a snapshot into the status report. Members in the config
// with no live agent are listed as unreachable. A member is reported as
// primary only while it also holds its region's leader key: a former primary
// that has not yet noticed it was deposed shows as unknown.
func BuildStatus(cfg config.Config, snap store.Snapshot) ClusterStatus {
	out := ClusterStatus{
		Cluster: cfg.Cluster, Primary: snap.Topology.Primary, Generation: snap.Topology.Generation,
		Paused: snap.Topology.Paused, SyncMode: snap.Topology.SyncMode, SyncSet: snap.Topology.SyncSet,
	}
	if out.SyncSet == nil {
		out.SyncSet = []string{}
	}
	if l, ok := snap.Leaders[PrimaryRegion(cfg, snap.Topology)]; ok {
		out.Primary = l.Member
	} else {
		out.Primary = ""
	}
	var primaryLSN cluster.LSN
	flush := map[string]cluster.ReplicaStat{}
	if p, ok := snap.Members[out.Primary]; ok && p.Role == cluster.RolePrimary {
		primaryLSN = p.LSN
		for _, r := range p.Replicas {
			flush[r.Name] = r
		}
	}
	seen := map[string]bool{}
	for _, r := range cfg.Regions {
		for _, cm := range r.Members {
			seen[cm.Name] = true
			ms := MemberStatus{Name: cm.Name, Region: r.Name, Zone: cm.Zone, Host: cm.Host, Port: cm.ReachPort(),
				Role: cluster.RoleUnknown, State: cluster.StateUnreachable}
			if m, ok := snap.Members[cm.Name]; ok {
				fill(&ms, m, snap, primaryLSN, flush)
			}
			out.Members = append(out.Members, ms)
		}
	}
	// Members registered in etcd but missing from this config (another
	// host's config, say) are still shown.
	var extra []string
	for n := range snap.Members {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		m := snap.Members[n]
		ms := MemberStatus{Name: n, Region: m.Region, Zone: m.Zone, Host: m.Host, Port: m.Port}
		fill(&ms, m, snap, primaryLSN, flush)
		out.Members = append(out.Members, ms)
	}
	return out
}

func fill(ms *MemberStatus, m cluster.Member, snap store.Snapshot, primaryLSN cluster.LSN, flush map[string]cluster.ReplicaStat) {
	ms.Role, ms.State, ms.Timeline, ms.LSN = m.Role, m.State, m.Timeline, m.LSN
	ms.PID, ms.AgentPID, ms.Generation, ms.LastError, ms.PromoteFailed = m.PID, m.AgentPID, m.Generation, m.LastError, m.PromoteFailed
	l, leads := snap.Leaders[m.Region]
	ms.Leader = leads && l.Member == m.Name
	if m.Role == cluster.RolePrimary && !ms.Leader {
		ms.Role = cluster.RoleUnknown
	}
	switch ms.Role {
	case cluster.RolePrimary:
		ms.Sync = m.SyncStandbyNames != ""
	case cluster.RoleReplica:
		ms.ReplayLag, ms.HeartbeatLag = copyPtr(m.ReplayLagMS), copyPtr(m.HeartbeatLagMS)
		if r, ok := flush[m.Name]; ok {
			ms.Sync = r.SyncState == "sync" || r.SyncState == "quorum"
			ms.LagBytes = cluster.Lag(primaryLSN, r.FlushLSN)
		} else if primaryLSN > 0 {
			ms.LagBytes = cluster.Lag(primaryLSN, m.LSN)
		}
	}
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
