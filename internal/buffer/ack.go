package buffer

// How the committer acknowledges what it applied: settled batches are
// removed from the stream by a purge when this committer alone holds what
// is pending (see ledger), one by one otherwise; batches that wait are
// renewed against JetStream's AckWait; writes that failed are handed on
// (re-enqueued or dead-lettered) before their batch is acknowledged; and
// each write is counted once, when its batch is.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ackParallel bounds the acknowledgements one by one in flight at once.
// Each waits for the server's confirmation (so that a write is counted
// only once its batch is really acknowledged).
const ackParallel = 64

// ackRenewEvery is how often batches waiting here tell JetStream they are
// in progress, against its AckWait.
func (c *Committer) ackRenewEvery() time.Duration { return c.cfg.AckWait / 3 }

// wakeAcks tells ackLoop that batches settled.
func (c *Committer) wakeAcks() {
	select {
	case c.ackNow <- struct{}{}:
	default:
	}
}

// ackLoop acknowledges settled batches: by purging the stream up to the
// first batch not settled when this committer alone holds what is pending
// (see ledger), one by one otherwise; and renews the batches that wait.
func (c *Committer) ackLoop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	// Renewals are looked for a few times per renewal period (each look
	// goes through every batch held).
	every := c.ackRenewEvery()
	look := min(time.Second, every/4)
	var looked time.Time
	for {
		select {
		case <-ctx.Done():
			// Stopping: what is settled is acknowledged now rather than
			// redelivered to the next committer (applied again as
			// duplicates), within a bound.
			fctx, cancel := context.WithTimeout(context.Background(), finalAckTimeout)
			c.acknowledge(fctx, time.Now().Add(ledgerSingleAfter))
			cancel()
			return
		case <-c.ackNow:
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(looked) >= look {
			looked = now
			for _, m := range c.ledger.renew(now, every) {
				_ = m.InProgress()
			}
		}
		c.acknowledge(ctx, now)
	}
}

// finalAckTimeout bounds the acknowledgements made as the committer stops.
const finalAckTimeout = 5 * time.Second

// acknowledge acknowledges what is settled, in bulk where it can.
func (c *Committer) acknowledge(ctx context.Context, now time.Time) {
	exclusive := false
	if upTo, seqs := c.ledger.prefix(); len(seqs) > 0 {
		exclusive = c.observe(ctx)
		if exclusive {
			if err := c.stream.Purge(ctx, jetstream.WithPurgeSequence(upTo)); err != nil {
				if n, ok := c.ackWarn.allow(now); ok {
					c.log.Warn("acknowledging by a purge of the stream; one by one instead", "up_to", upTo, "err", err, "failures", n)
				}
				exclusive = false
			} else {
				c.Purges.Add(1)
				for _, h := range c.ledger.purged(upTo, seqs) {
					c.AckedByPurge.Add(1)
					c.count(msgSeq(h.msg), h.batch)
				}
			}
		}
	} else if !c.Purging.Load() && c.ledger.size() == 0 {
		c.observe(ctx) // nothing held: a chance of a new baseline
	}
	singles := c.ledger.singles(exclusive, now)
	if len(singles) == 0 {
		return
	}
	sem := make(chan struct{}, ackParallel)
	var wg sync.WaitGroup
	for _, seq := range singles {
		msg := c.ledger.msg(seq)
		if msg == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := msg.DoubleAck(ctx); err != nil {
				if n, ok := c.ackWarn.allow(time.Now()); ok {
					c.log.Warn("acknowledging a batch failed; it is tried again (applied already: no second effect)", "seq", seq, "err", err, "failures", n)
				}
				return
			}
			if h, ok := c.ledger.take(seq); ok {
				c.AckedSingly.Add(1)
				c.count(seq, h.batch)
			}
		}()
	}
	wg.Wait()
}

// withoutPayloads is b as it waits for its acknowledgement: what settles
// it (keys, acceptance times, attempts, errors) without the payloads,
// which are in the database or handed on by then.
func (b settledBatch) withoutPayloads() settledBatch {
	strip := func(ws []Write) []Write {
		out := make([]Write, len(ws))
		for i, w := range ws {
			w.Payload = nil
			out[i] = w
		}
		return out
	}
	b.applied, b.again, b.dead = strip(b.applied), strip(b.again), strip(b.dead)
	return b
}

// handOn stores a batch's failed writes durably (re-enqueued for a later
// attempt, or dead-lettered) before the batch may be acknowledged.
func (c *Committer) handOn(ctx context.Context, it groupItem, b settledBatch) bool {
	seq := it.seq
	if len(b.again) > 0 {
		id := fmt.Sprintf("retry-%d", seq)
		if _, err := c.js.Publish(ctx, c.cfg.Log.Subject, appendBatch(nil, b.again), jetstream.WithMsgID(id)); err != nil {
			c.log.Warn("re-enqueueing failed writes; the batch will be redelivered", "err", err)
			return false
		}
	}
	for _, w := range b.dead {
		id := fmt.Sprintf("dead-%d-%s", seq, keyHash(w.Key))
		if _, err := c.js.Publish(ctx, deadSubject(c.cfg.DeadSubject, w.Key), appendBatch(nil, []Write{w}), jetstream.WithMsgID(id)); err != nil {
			c.log.Warn("dead-lettering a write; the batch will be redelivered", "err", err)
			return false
		}
	}
	return true
}

// count counts an acknowledged batch's writes and settles them, once: a
// batch sent back (its primary changed first) or whose acknowledgement
// failed is counted when it is finally acknowledged.
func (c *Committer) count(seq uint64, b settledBatch) {
	if c.acked.seen(seq, time.Now()) {
		// Another delivery of this batch was acknowledged before (it was
		// redelivered while this one was in progress): already counted.
		return
	}
	c.Committed.Add(uint64(len(b.applied)))
	c.Applied.Add(uint64(len(b.applied) - b.duplicates))
	c.Duplicates.Add(uint64(b.duplicates))
	c.Dead.Add(uint64(len(b.dead)))
	for _, w := range b.dead {
		c.log.Warn("write dead-lettered", "key", w.Key, "kind", w.Kind, "attempts", w.Attempts, "err", w.LastError)
	}
	if c.settled != nil {
		c.settled(b)
	}
}

// logLimit lets a repeated warning through once per logLimitEvery, with
// the number of occurrences since the last one let through.
type logLimit struct {
	mu    sync.Mutex
	last  time.Time
	count int
}

const logLimitEvery = 5 * time.Second

func (l *logLimit) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if now.Sub(l.last) < logLimitEvery {
		return 0, false
	}
	n := l.count
	l.last, l.count = now, 0
	return n, true
}

// ackedSeqs is the set of stream sequences acknowledged within the last
// ackedMemory, pruned as it goes.
type ackedSeqs struct {
	mu    sync.Mutex
	at    map[uint64]time.Time
	order []uint64 // acknowledgement order, for pruning
}

// ackedMemory is how long an acknowledged batch is remembered. A second
// delivery exists only when a renewal of the first was missed (AckWait is
// renewed every AckWait/3 while a batch waits), and both then go through
// the committer in stream order, the second acknowledged soon after the
// first. Two minutes bounds the memory (at 1,000 batches/s, about 5 MB).
const ackedMemory = 2 * time.Minute

// seen records seq as acknowledged at now and reports whether it was
// already.
func (a *ackedSeqs) seen(seq uint64, now time.Time) bool {
	if seq == 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[uint64]time.Time{}
	}
	for len(a.order) > 0 && now.Sub(a.at[a.order[0]]) > ackedMemory {
		delete(a.at, a.order[0])
		a.order = a.order[1:]
	}
	if _, ok := a.at[seq]; ok {
		return true
	}
	a.at[seq] = now
	a.order = append(a.order, seq)
	return false
}
