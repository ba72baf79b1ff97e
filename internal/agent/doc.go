// Package agent runs one member: it owns the member's PostgreSQL data
// directory and process, publishes the member's state in etcd under its
// lease, and carries out what cluster.Decide plans: promote, demote, follow,
// rejoin (pg_rewind, else a fresh base backup), hand over on switchover.
//
// Risks, and how the package meets them:
//   - Two writable primaries. A primary stops PostgreSQL before its lease can
//     have expired (lease.go runs this guard on its own goroutine so that a
//     slow action cannot delay it), and any member that finds itself writable
//     without holding the key demotes at once.
//   - Lost acknowledged commits. Only members of the synchronous set may be
//     promoted, only the one with the most WAL, and only when enough of the
//     set answered (cluster.Decide). The synchronous set recorded in etcd is
//     widened before PostgreSQL's synchronous_standby_names and narrowed only
//     after the remaining replicas have caught up (sync.go).
//   - A stale primary coming back. A former primary is marked as needing a
//     rewind and never starts writable again without winning a new election.
package agent
