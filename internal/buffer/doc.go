// Package buffer is holdfast's durable write buffer: writes are accepted
// into NATS JetStream (fsynced before they are acknowledged) and applied to
// PostgreSQL by a committer exactly once, through failovers.
//
// This file set holds the storage side: an embedded NATS server (what
// `holdfast up` runs), the batch encoding, and Log, which group-commits
// concurrent writes into one JetStream message so that durability costs
// one fsync per batch rather than per write.
package buffer
