package cluster

import "time"

// Role is what a member is in the replication topology.
type Role string

const (
	RolePrimary       Role = "primary"
	RoleReplica       Role = "replica"
	RoleStandbyLeader Role = "standby-leader"
	RoleUnknown       Role = "unknown"
)

// State is the condition of a member's PostgreSQL process.
type State string

const (
	StateRunning     State = "running"
	StateStarting    State = "starting"
	StateStopped     State = "stopped"
	StateRejoining   State = "rejoining"
	StateUnreachable State = "unreachable"
)

// Member is what an agent publishes about itself under members/<name>, attached
// to the agent's lease so that it disappears when the agent dies.
type Member struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Zone   string `json:"zone"`
	Host   string `json:"host"`
	Port   int    `json:"port"`

	Role  Role  `json:"role"`
	State State `json:"state"`
	// Generation is the topology generation the member last acted under. A
	// primary reports the generation in which it was promoted.
	Generation int64 `json:"generation"`

	Timeline  int `json:"timeline"`
	LSN       LSN `json:"lsn"`        // primary: current write LSN; replica: max(received, replayed)
	ReplayLSN LSN `json:"replay_lsn"` // replica only
	// Streaming is true when a replica's WAL receiver is streaming from the
	// current leader.
	Streaming bool   `json:"streaming"`
	Upstream  string `json:"upstream,omitempty"`
	// ReplayLagMS (replica only) is how far replay was behind, in
	// milliseconds, when the report was made: 0 when the replica had replayed
	// all WAL it received, else the time since the last replayed transaction
	// committed on the primary. It says nothing of WAL the replica has not
	// received. Absent when unknown (a primary, a replica that has neither
	// streamed nor replayed a transaction since it started, an agent older
	// than this field): readers must treat absent as "too far behind".
	ReplayLagMS *int64 `json:"replay_lag_ms,omitempty"`
	// HeartbeatLagMS (replica only) is the replica's lag in time measured end
	// to end, in milliseconds: how old the newest heartbeat row (written by
	// the primary every agent.heartbeat_interval) was when the replica first
	// saw it, or how overdue the next one is, whichever is larger. Unlike
	// ReplayLagMS it counts WAL not yet received; it also grows while the
	// primary is down. Absent while no heartbeat has been seen.
	HeartbeatLagMS *int64 `json:"heartbeat_lag_ms,omitempty"`
	// FirstXID (primary only) is the first transaction id its server could
	// hand out since it last became writable (started as primary, or was
	// promoted): ids below it were decided by WAL it replayed, ids from it on
	// are new. A transaction id learnt from an earlier server names the same
	// transaction here only if it is below FirstXID: see the proxy's lookup
	// of a COMMIT lost with its server. 0 when unknown.
	FirstXID uint64 `json:"first_xid,omitempty"`
	// PGStartedUS (primary only) is pg_postmaster_start_time() in Unix
	// microseconds, naming the server process FirstXID belongs to.
	PGStartedUS int64 `json:"pg_started_us,omitempty"`
	// SyncStandbyNames is the primary's effective synchronous_standby_names.
	SyncStandbyNames string `json:"sync_standby_names,omitempty"`
	// Replicas is the primary's view of its streaming replicas.
	Replicas []ReplicaStat `json:"replicas,omitempty"`

	PID      int    `json:"pid"`
	AgentPID int    `json:"agent_pid"`
	LeaseID  int64  `json:"lease_id"`
	SystemID string `json:"system_id,omitempty"`

	// LeaderLostRev is the etcd revision of the leader-key deletion after which
	// this report was made. Candidates wait for such fresh reports from every
	// live member before deciding who has the most WAL.
	LeaderLostRev int64 `json:"leader_lost_rev,omitempty"`

	// PromoteFailed: the member's promotion failed
	// cluster.MaxPromoteFailures times in a row, within the last 30 s, and
	// it has not followed a leader since. It reports its WAL position but is
	// promoted only by an operator naming it.
	PromoteFailed bool `json:"promote_failed,omitempty"`

	LastError string    `json:"last_error,omitempty"`
	Version   string    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	// LoopIntervalMS is the agent's loop interval in milliseconds. The agent
	// publishes on every loop tick unless it published less than one interval
	// before, so consecutive reports are at most about two intervals apart
	// (plus the time a step takes): a reader of UpdatedAt can tell a silent
	// agent from a quiet one. 0 from agents older than this field.
	LoopIntervalMS int64 `json:"loop_interval_ms,omitempty"`
}

// ReplicaStat is one row of the primary's pg_stat_replication.
type ReplicaStat struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	SyncState string `json:"sync_state"`
	FlushLSN  LSN    `json:"flush_lsn"`
	ReplayLSN LSN    `json:"replay_lsn"`
}

// Leader is the holder of a region's leader key. Revision is the key's mod
// revision in etcd: the fencing token of that term of leadership.
type Leader struct {
	Region   string `json:"region"`
	Member   string `json:"member"`
	LeaseID  int64  `json:"lease_id"`
	Revision int64  `json:"-"`
}

// Sync modes for the primary region.
const (
	// SyncQuorum: synchronous_standby_names = 'ANY n (...)' over healthy
	// replicas; commits wait when no synchronous replica exists.
	SyncQuorum = "quorum"
	// SyncRelaxed: like quorum, but when no replica is healthy synchronous
	// replication is switched off so that commits do not wait. Automatic
	// failover is then refused until a replica is synchronous again.
	SyncRelaxed = "relaxed"
	// SyncOff: asynchronous replication. Failover promotes the replica with
	// the most WAL and may lose acknowledged commits.
	SyncOff = "off"
)

// Topology is the desired state of the cluster, written with compare-and-swap.
type Topology struct {
	Cluster       string `json:"cluster"`
	PrimaryRegion string `json:"primary_region"`
	// Primary is the member elected in Generation.
	Primary    string `json:"primary"`
	Generation int64  `json:"generation"`
	SyncMode   string `json:"sync_mode"`
	// SyncCount is W: how many synchronous replicas must confirm a commit.
	SyncCount int `json:"sync_count"`
	// SyncSet holds the members that may have confirmed commits: the only ones
	// eligible for automatic promotion. It is always a superset of the names
	// in the primary's synchronous_standby_names.
	SyncSet    []string           `json:"sync_set"`
	Paused     bool               `json:"paused"`
	Switchover *SwitchoverRequest `json:"switchover,omitempty"`
	Failover   *FailoverRequest   `json:"failover,omitempty"`
	SystemID   string             `json:"system_id,omitempty"`
}

// SwitchoverRequest is a planned change of primary.
type SwitchoverRequest struct {
	From string `json:"from"`
	To   string `json:"to,omitempty"` // empty: the best candidate
	// MinLSN is set by the old primary once it has stopped: the target may
	// promote only after it has received WAL up to this position.
	MinLSN     LSN  `json:"min_lsn,omitempty"`
	HandedOver bool `json:"handed_over,omitempty"`
	// Region, when set, makes it a region switchover: Region becomes the
	// primary region and To, its standby leader, the primary.
	Region      string    `json:"region,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	Deadline    time.Time `json:"deadline"`
}

// FailoverRequest is a manual failover.
type FailoverRequest struct {
	To            string    `json:"to,omitempty"`
	AllowDataLoss bool      `json:"allow_data_loss"`
	RequestedAt   time.Time `json:"requested_at"`
	Deadline      time.Time `json:"deadline"`
}

// InSyncSet reports whether name is in the synchronous set.
func (t Topology) InSyncSet(name string) bool {
	for _, n := range t.SyncSet {
		if n == name {
			return true
		}
	}
	return false
}

// Event is one entry of the append-only event log.
type Event struct {
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"`
	Member     string            `json:"member,omitempty"`
	Generation int64             `json:"generation,omitempty"`
	Message    string            `json:"message"`
	Fields     map[string]string `json:"fields,omitempty"`
	Revision   int64             `json:"revision,omitempty"`
}

// Event kinds.
const (
	EventBootstrap         = "bootstrap"
	EventLeaderLost        = "leader-lost"
	EventLeaderReleased    = "leader-released"
	EventPromoted          = "promoted"
	EventPromoteFailed     = "promote-failed"
	EventDemoted           = "demoted"
	EventFailoverBlocked   = "failover-blocked"
	EventRejoined          = "rejoined"
	EventRewind            = "rewind"
	EventBaseBackup        = "basebackup"
	EventSwitchoverStart   = "switchover-requested"
	EventSwitchoverDone    = "switchover-done"
	EventFailoverRequested = "failover-requested"
	EventPostgresCrashed   = "postgres-crashed"
	EventPostgresRestarted = "postgres-restarted"
	EventSyncChanged       = "sync-changed"
	EventPaused            = "paused"
	EventResumed           = "resumed"
	EventAgentStarted      = "agent-started"
	EventAgentStopped      = "agent-stopped"
	EventStandbyLeader     = "standby-leader"
	EventRegionPromoted    = "region-promoted"
	EventRegionFailover    = "region-failover"
	EventCanaryActed       = "canary-acted"
	// EventMemberDown and EventMemberRestored: holdfast up carried out, and
	// ended, a drill's down fault on a member.
	EventMemberDown     = "down"
	EventMemberRestored = "restored"
)

// LastPrimary is the last position a region's primary reported. It is kept
// without a lease, so it outlives the region.
type LastPrimary struct {
	Member   string    `json:"member"`
	Timeline int       `json:"timeline"`
	LSN      LSN       `json:"lsn"`
	At       time.Time `json:"at"`
}
