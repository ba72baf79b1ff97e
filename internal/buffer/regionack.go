package buffer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/cluster"

	"github.com/holdfast/holdfast/internal/lsn"
)

// Replication is what the committer knows of the other regions, to hold
// the acknowledgement of a committed batch until every standby region has
// it (see Committer.Replication).
type Replication struct {
	// PrimaryTimeline is the current primary's timeline (0: unknown).
	PrimaryTimeline int
	// Standbys is, for each standby region that has a leader, the WAL its
	// leader has received.
	Standbys map[string]Position
}

// Position is a WAL position on a timeline.
type Position struct {
	Timeline int
	LSN      cluster.LSN
}

// regionVerdict is what to do with a committed batch now.
type regionVerdict int

const (
	verdictWait      regionVerdict = iota // not every standby region has it yet
	verdictAck                            // every standby region has it
	verdictRedeliver                      // the primary changed before they did: apply it again there
)

// judge decides for a batch committed at pos. A standby region has the
// batch once its leader received WAL up to pos on the same timeline. Once
// the primary is on a later timeline (an in-region failover, or a standby
// region taking over), a batch may be missing there whatever the standby
// regions had: it is redelivered, and applying it again is harmless (an
// applied write is found a duplicate). While no primary is known (a region
// change under way) nothing is acknowledged: the old primary region then
// has no leader, and "every standby region has it" would be vacuously true.
func judge(pos Position, r Replication) regionVerdict {
	switch {
	case r.PrimaryTimeline == 0 || r.PrimaryTimeline < pos.Timeline:
		return verdictWait // no primary known, or its report is older than the commit
	case r.PrimaryTimeline > pos.Timeline:
		return verdictRedeliver
	}
	for _, s := range r.Standbys {
		if s.Timeline != pos.Timeline || s.LSN < pos.LSN {
			return verdictWait
		}
	}
	return verdictAck
}

// committed is a batch applied and waiting to be acknowledged (for the
// standby regions, with Replication).
type committed struct {
	msg   jetstream.Msg
	seq   uint64 // stream sequence
	pos   Position
	batch settledBatch
}

// commitPosition is where the committer's connection's last commit ended:
// the server's WAL position and timeline right after it, and the stamp of
// the server that answered (compared with the transaction's: through the
// proxy, the statement after a COMMIT may reach a new primary).
func commitPosition(ctx context.Context, conn *pgx.Conn) (Position, serverStamp, error) {
	var at, walfile string
	var stamp serverStamp
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn()), pg_postmaster_start_time()::text`).Scan(&at, &walfile, &stamp.started); err != nil {
		return Position{}, stamp, err
	}
	l, err := lsn.Parse(at)
	if err != nil {
		return Position{}, stamp, err
	}
	if len(walfile) < 8 {
		return Position{}, stamp, fmt.Errorf("wal file name %q", walfile)
	}
	stamp.timeline = walfile[:8]
	tl, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return Position{}, stamp, fmt.Errorf("wal file name %q: %w", walfile, err)
	}
	return Position{Timeline: int(tl), LSN: l}, stamp, nil
}

// regionAckLoop settles committed batches once every standby region has
// them, in commit order (ackLoop then acknowledges them), and sends back
// for redelivery those the primary changed under. Until then JetStream
// keeps them (ackLoop tells it they are in progress), so that a region
// failover loses none.
func (c *Committer) regionAckLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var queue []committed
	for {
		select {
		case <-ctx.Done():
			return // unacknowledged batches are redelivered to the next committer
		case es := <-c.pendingAcks:
			queue = append(queue, es...)
			continue
		case <-t.C:
		}
		if len(queue) == 0 {
			c.awaitingRegions.Store(0)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := c.cfg.Replication(rctx)
		cancel()
		if err != nil {
			c.log.Debug("reading the standby regions' positions", "err", err)
			continue
		}
		n := 0
		now := time.Now()
	judging:
		for _, e := range queue {
			switch judge(e.pos, r) {
			case verdictWait:
				break judging
			case verdictAck:
				c.ledger.settle(e.seq, e.batch, now)
			case verdictRedeliver:
				c.Redelivered.Add(1)
				c.ledger.set(e.seq, heldReturned)
				_ = e.msg.Nak()
			}
			n++
		}
		if n > 0 {
			c.wakeAcks()
		}
		queue = queue[n:]
		c.awaitingRegions.Store(int64(len(queue)))
	}
}
