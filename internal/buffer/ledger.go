package buffer

import (
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The committer acknowledges batches in bulk. Each acknowledgement of a
// work-queue message is a removal from the stream, written and fsynced on
// its own (sync always): about 2,000 a second on an idle 2-core machine,
// a few hundred under load, and a backlog of small batches (written while
// the database failed over) drained at that rate whatever PostgreSQL could
// take. A purge of the stream up to a sequence removes every message below
// it in one write, and the consumer forgets them as if acknowledged.
//
// A purge is safe only when every message below the sequence is a batch
// this committer has settled. The ledger knows which batches it holds;
// the consumer's state tells whether anyone else holds any:
//
//   - a baseline is taken when the consumer has nothing pending (at start,
//     or later when all is acknowledged): every batch pending after it was
//     delivered after it;
//   - if every delivery since the baseline came here (the deliveries
//     received here equal the consumer's delivery count since), every
//     pending batch is one held here, and the pending count must match;
//   - the purge then goes up to the first batch held here and not settled
//     (being applied, waiting for the standby regions, or sent back).
//
// Otherwise (several committers on one consumer, a restart with batches
// delivered to the previous process and not yet redelivered, a delivery
// lost on the way) settled batches are acknowledged one by one, as before,
// until the next baseline. A settled batch behind one that is not
// (a batch sent back after a primary change, or waiting out a retry
// delay) is acknowledged on its own after ledgerSingleAfter.
type ledger struct {
	mu   sync.Mutex
	held map[uint64]*heldBatch // by stream sequence
	// settled counts the held batches settled (none: nothing to do).
	settled int

	based         bool   // a baseline is known
	baseDelivered uint64 // the consumer's delivery count at the baseline
	received      uint64 // deliveries received here since the baseline
	purgedTo      uint64 // every stream sequence below it is acknowledged

	exclusive bool      // what the last observation found
	tried     time.Time // the last time the committer made way for a baseline
}

// heldState is where a held batch is.
type heldState int

const (
	heldApplying heldState = iota // delivered, being applied
	heldAwaiting                  // applied, waiting for the standby regions
	heldReturned                  // sent back (negatively acknowledged): it comes back
	heldSettled                   // applied where it must be: ready to acknowledge
)

// heldBatch is one batch delivered here and not yet acknowledged.
type heldBatch struct {
	state     heldState
	msg       jetstream.Msg // its latest delivery
	batch     settledBatch  // once settled: what to count
	settledAt time.Time
	renewedAt time.Time // last in-progress notice (or delivery)
}

// ledgerSingleAfter is how long a settled batch waits behind one that is
// not before it is acknowledged on its own.
const ledgerSingleAfter = time.Second

// delivery is what to do with a batch just delivered.
type delivery int

const (
	deliverApply   delivery = iota // apply it
	deliverSettled                 // settled here already (a redelivery): nothing to do
	deliverStale                   // below what was purged: gone from the stream, drop it
)

// deliver records a delivery of stream sequence seq, consumer delivery
// sequence dseq.
func (l *ledger) deliver(seq, dseq uint64, msg jetstream.Msg, now time.Time) delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.based && dseq > l.baseDelivered {
		l.received++
	}
	if seq < l.purgedTo {
		return deliverStale
	}
	if l.held == nil {
		l.held = map[uint64]*heldBatch{}
	}
	h := l.held[seq]
	if h == nil {
		h = &heldBatch{}
		l.held[seq] = h
	}
	h.msg, h.renewedAt = msg, now
	if h.state == heldSettled {
		return deliverSettled
	}
	h.state = heldApplying
	return deliverApply
}

// set moves a held batch to state (applying, awaiting or returned).
func (l *ledger) set(seq uint64, state heldState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.held[seq]; h != nil && h.state != heldSettled {
		h.state = state
	}
}

// settle records a batch as ready to acknowledge, with what to count then.
// A batch settled already keeps its first settlement (a second delivery
// of it applied nothing new).
func (l *ledger) settle(seq uint64, b settledBatch, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.held[seq]; h != nil && h.state != heldSettled {
		h.state, h.batch, h.settledAt = heldSettled, b, now
		l.settled++
	}
}

// observe takes the consumer's state (pending: delivered and not
// acknowledged; delivered: its delivery count) and reports whether every
// batch pending is one held here.
func (l *ledger) observe(pending int, delivered uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pending == 0 {
		l.based, l.baseDelivered, l.received = true, delivered, 0
	}
	l.exclusive = l.based && delivered >= l.baseDelivered && l.received == delivered-l.baseDelivered && pending == len(l.held)
	return l.exclusive
}

// ledgerBaselineEvery is how often a committer that cannot purge stops
// fetching until it holds nothing, for a chance of a new baseline (a
// delivery lost on the way, or a previous process's batches, would
// otherwise keep it acknowledging one by one until the queue is idle).
const ledgerBaselineEvery = 5 * time.Second

// needsBaseline reports whether the committer should make way for a new
// baseline now (the last observation found it could not purge, and it has
// not tried lately), and records the try.
func (l *ledger) needsBaseline(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exclusive || now.Sub(l.tried) < ledgerBaselineEvery {
		return false
	}
	l.tried = now
	return true
}

// prefix is where a purge may go (every held batch below upTo settled,
// upTo itself not held or not settled) and the settled batches it
// acknowledges, in order; none when there is nothing to purge.
func (l *ledger) prefix() (upTo uint64, seqs []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	upTo, seqs = l.prefixLocked()
	if len(seqs) == 0 {
		return 0, nil
	}
	return upTo, seqs
}

// prefixLocked is prefix, with upTo also when no settled batch is below
// it (0 when none is settled).

func (l *ledger) prefixLocked() (upTo uint64, seqs []uint64) {
	if l.settled == 0 {
		return 0, nil
	}
	var top uint64
	for seq, h := range l.held {
		if h.state != heldSettled && (upTo == 0 || seq < upTo) {
			upTo = seq
		}
		top = max(top, seq)
	}
	if upTo == 0 {
		upTo = top + 1
	}
	for seq, h := range l.held {
		if seq < upTo && h.state == heldSettled {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return upTo, seqs
}

// purged records a purge up to upTo and takes out the batches it
// acknowledged (those of seqs, from prefix, still held and settled).
func (l *ledger) purged(upTo uint64, seqs []uint64) []heldBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.purgedTo = max(l.purgedTo, upTo)
	var out []heldBatch
	for _, seq := range seqs {
		if h := l.held[seq]; h != nil && h.state == heldSettled {
			out = append(out, *h)
			l.remove(seq)
		}
	}
	// A batch below the purge is gone from the stream whatever its state
	// here (none should be: the purge stops at the first unsettled one).
	for seq := range l.held {
		if seq < upTo {
			l.remove(seq)
		}
	}
	return out
}

// singles is the settled batches to acknowledge one by one now: all of
// them when purging is not possible (exclusive false), else those settled
// behind an unsettled one for longer than ledgerSingleAfter.
func (l *ledger) singles(exclusive bool, now time.Time) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	upTo, _ := l.prefixLocked()
	if upTo == 0 {
		return nil // nothing settled
	}
	var out []uint64
	for seq, h := range l.held {
		if h.state != heldSettled {
			continue
		}
		if !exclusive || (seq >= upTo && now.Sub(h.settledAt) >= ledgerSingleAfter) {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out
}

// take removes a batch acknowledged on its own and returns it.
func (l *ledger) take(seq uint64) (heldBatch, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[seq]
	if h == nil {
		return heldBatch{}, false
	}
	l.remove(seq)
	return *h, true
}

// remove forgets a held batch (l.mu held).
func (l *ledger) remove(seq uint64) {
	if h := l.held[seq]; h != nil {
		if h.state == heldSettled {
			l.settled--
		}
		delete(l.held, seq)
	}
}

// msg returns a held batch's latest delivery.
func (l *ledger) msg(seq uint64) jetstream.Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.held[seq]; h != nil {
		return h.msg
	}
	return nil
}

// renew returns the deliveries of batches held here (being applied,
// waiting for the standby regions, or to be acknowledged) not renewed for
// every, and marks them renewed at now: JetStream would redeliver them
// after its AckWait (a transaction held up by a lock for longer is not a
// crashed committer). One sent back is not renewed: it is to come back.
func (l *ledger) renew(now time.Time, every time.Duration) []jetstream.Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []jetstream.Msg
	for _, h := range l.held {
		if h.state != heldReturned && now.Sub(h.renewedAt) >= every && h.msg != nil {
			out = append(out, h.msg)
			h.renewedAt = now
		}
	}
	return out
}

// size is the number of batches held.
func (l *ledger) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}
