// Package proxy is holdfast's PostgreSQL protocol proxy: a writer endpoint
// that follows the primary and a reader endpoint over healthy replicas. It
// learns the topology from etcd watches, authenticates clients itself and
// opens server connections with its own stored credentials.
//
// Risks: routing a write to a member that is not the primary (the router
// only names a writer that holds the leader key and reports itself a running
// primary, and holds otherwise), leaking server connections, goroutines or
// CPU when clients vanish (a session ends exactly once, relaying or parked,
// as soon as its client's connection ends; the end of a client's stream is
// final in msgReader, so no deadline can hide it; each end is counted by
// cause), and unbounded memory from hostile clients (message sizes are
// capped before anything is read).
package proxy
