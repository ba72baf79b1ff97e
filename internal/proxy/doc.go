// Package proxy is holdfast's PostgreSQL protocol proxy: a writer endpoint
// that follows the primary and a reader endpoint over healthy replicas. It
// learns the topology from etcd watches, authenticates clients itself and
// opens server connections with its own stored credentials.
//
// Risks: routing a write to a member that is not the primary (the router
// only names a writer that holds the leader key and reports itself a running
// primary, and holds otherwise), leaking server connections when clients
// vanish (every relay goroutine pair closes both sides), and unbounded memory
// from hostile clients (message sizes are capped before anything is read).
package proxy
