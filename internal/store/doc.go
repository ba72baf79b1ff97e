// Package store keeps holdfast's cluster state in etcd: member reports attached
// to agent leases, the per-region leader keys, the desired topology, the
// bootstrap claim and the event log. It also starts an embedded single-node
// etcd for `holdfast up` and for tests.
//
// Layout under /holdfast/<cluster>/ (see docs/architecture.md, "State in etcd"):
//
//	members/<name>        JSON cluster.Member, attached to the agent's lease
//	leader/<region>       JSON cluster.Leader, only ever created under a lease
//	topology              JSON cluster.Topology, only written with compare-and-swap
//	initialize            JSON {member, system_id}: who may run initdb, and what it made
//	last-primary/<region> JSON cluster.LastPrimary: the region's last primary position
//	events/<nanos>-<name> JSON cluster.Event, append-only, trimmed to Config.MaxEvents
//
// The risk this package carries is split brain. The transactions in leader.go
// and topology.go are the only way a leader key or the topology is written, and
// each one states in its If clause what the caller believed when it decided:
// the leader key's mod revision is the fencing token of a term, the topology's
// mod revision the version of the desired state. A caller whose belief is stale
// gets ok=false, never a partial write.
//
// A second risk is telling "no" from "don't know". A compare that failed is a
// definite answer and is returned as ok=false with a nil error. A timeout or a
// lost connection is returned as an error matching ErrUnavailable: for a
// write, the transaction may or may not have been applied, so the caller must
// read again before it acts (for example Leader after Campaign).
//
// Values in etcd are untrusted input: anything undecodable is logged and
// skipped in collections (Members, Snapshot, Watch) and reported as ErrCorrupt
// where a single key was asked for. Nothing here panics on bad data.
package store
