// Package cluster holds holdfast's domain types (members, leader, topology,
// events) and the pure decision functions that say what a member should do
// given what it observes. It performs no I/O and imports no other package of
// the project, so every decision can be tested with tables.
//
// The risk this package carries is correctness of failover: a wrong answer
// here loses acknowledged writes or leaves two writable primaries. The
// invariants it enforces are numbered in docs/architecture.md ("Invariants").
package cluster
