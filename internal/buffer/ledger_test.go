package buffer

import (
	"slices"
	"testing"
	"time"
)

// TestLedger walks the ledger through deliveries, settlements and the
// consumer's state, checking at each step whether a purge is allowed,
// where it may go, and what is acknowledged one by one.
func TestLedger(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type op struct {
		name string
		// one of:
		deliver       []uint64 // stream sequences, consumer sequence = next dseq
		skipDelivery  int      // deliveries made elsewhere (consumer sequences not received here)
		settle        []uint64
		set           []uint64
		state         heldState
		observe       bool // pending and delivered from the fake consumer
		purge         bool // purge up to prefix
		ack           []uint64
		otherAcks     bool     // the other committer acknowledges its batch 6
		removed       []uint64 // gone from the consumer behind the ledger's back
		at            time.Duration
		wantDeliver   []delivery
		wantExclusive bool
		wantUpTo      uint64
		wantPrefix    []uint64
		wantSingles   []uint64 // with wantExclusive as the exclusivity
	}
	steps := []op{
		{name: "baseline: nothing pending", observe: true, wantExclusive: true},
		{name: "three delivered", deliver: []uint64{1, 2, 3}, wantDeliver: []delivery{deliverApply, deliverApply, deliverApply}},
		{name: "nothing settled: no prefix", observe: true, wantExclusive: true},
		{name: "2 settled: behind 1", settle: []uint64{2}, observe: true, wantExclusive: true, wantUpTo: 0},
		{name: "1 settled: prefix 1,2 up to 3", settle: []uint64{1}, observe: true, wantExclusive: true, wantUpTo: 3, wantPrefix: []uint64{1, 2}},
		{name: "purge up to 3", purge: true},
		{name: "a stale redelivery of 2", deliver: []uint64{2}, wantDeliver: []delivery{deliverStale}},
		{name: "4 and 5 delivered", deliver: []uint64{4, 5}, wantDeliver: []delivery{deliverApply, deliverApply}},
		{name: "5 settled", settle: []uint64{5}},
		{name: "3 sent back", set: []uint64{3}, state: heldReturned},
		{name: "5 behind 3: no prefix, no single yet", observe: true, wantExclusive: true, wantUpTo: 0, at: 500 * time.Millisecond},
		{name: "5 behind 3 for a second: acknowledged on its own", at: 1500 * time.Millisecond, observe: true, wantExclusive: true, wantSingles: []uint64{5}},
		{name: "5 acknowledged", ack: []uint64{5}},
		{name: "3 comes back, 4 settled: prefix blocked by 3", deliver: []uint64{3}, wantDeliver: []delivery{deliverApply}, settle: []uint64{4}, observe: true, wantExclusive: true},
		{name: "3 settled: prefix 3,4 up to 5 (past the acknowledged 5)", settle: []uint64{3}, observe: true, wantExclusive: true, wantUpTo: 5, wantPrefix: []uint64{3, 4}},
		{name: "purge up to 5", purge: true},
		{name: "nothing held: a new baseline", observe: true, wantExclusive: true},
		{name: "another committer takes a delivery", skipDelivery: 1},
		{name: "7 delivered here and settled: not exclusive, acknowledged on its own", deliver: []uint64{7}, wantDeliver: []delivery{deliverApply}, settle: []uint64{7}, observe: true, wantExclusive: false, wantUpTo: 8, wantPrefix: []uint64{7}, wantSingles: []uint64{7}},
		{name: "the other's 6 acknowledged: counts match, but a delivery went elsewhere", otherAcks: true, observe: true, wantExclusive: false, wantUpTo: 8, wantPrefix: []uint64{7}, wantSingles: []uint64{7}},
		{name: "7 acknowledged: nothing pending, new baseline", ack: []uint64{7}, observe: true, wantExclusive: true},
		{name: "8 delivered, settled, and redelivered: settled still", deliver: []uint64{8}, wantDeliver: []delivery{deliverApply}, settle: []uint64{8}},
		{name: "the redelivery", deliver: []uint64{8}, wantDeliver: []delivery{deliverSettled}, observe: true, wantExclusive: true, wantUpTo: 9, wantPrefix: []uint64{8}},
		{name: "9 delivered, 8 removed behind the ledger's back: pending 1, held 2", deliver: []uint64{9}, wantDeliver: []delivery{deliverApply}, removed: []uint64{8},
			observe: true, wantExclusive: false, wantUpTo: 9, wantPrefix: []uint64{8}, wantSingles: []uint64{8}},
	}
	var l ledger
	var dseq uint64
	pending := map[uint64]bool{} // the fake consumer's pending set
	for i, s := range steps {
		now := t0.Add(s.at)
		if s.skipDelivery > 0 {
			dseq += uint64(s.skipDelivery)
			pending[6] = true // the other committer's batch
		}
		var got []delivery
		for _, seq := range s.deliver {
			dseq++
			d := l.deliver(seq, dseq, nil, now)
			got = append(got, d)
			if d != deliverStale {
				pending[seq] = true
			}
		}
		if !slices.Equal(got, s.wantDeliver) {
			t.Fatalf("step %d (%s): deliveries %v, want %v", i, s.name, got, s.wantDeliver)
		}
		for _, seq := range s.settle {
			l.settle(seq, settledBatch{}, now)
		}
		for _, seq := range s.set {
			l.set(seq, s.state)
		}
		for _, seq := range s.ack {
			if _, ok := l.take(seq); !ok {
				t.Fatalf("step %d (%s): take(%d): not held", i, s.name, seq)
			}
			delete(pending, seq)
		}
		if s.otherAcks {
			delete(pending, 6)
		}
		for _, seq := range s.removed {
			delete(pending, seq)
		}
		if s.purge {
			upTo, seqs := l.prefix()
			out := l.purged(upTo, seqs)
			if len(out) != len(seqs) {
				t.Fatalf("step %d (%s): purged %d batches, want %d", i, s.name, len(out), len(seqs))
			}
			for seq := range pending {
				if seq < upTo {
					delete(pending, seq)
				}
			}
		}
		if !s.observe {
			continue
		}
		ex := l.observe(len(pending), dseq)
		if ex != s.wantExclusive {
			t.Fatalf("step %d (%s): exclusive %v, want %v", i, s.name, ex, s.wantExclusive)
		}
		upTo, seqs := l.prefix()
		if upTo != s.wantUpTo || !slices.Equal(seqs, s.wantPrefix) {
			t.Fatalf("step %d (%s): prefix up to %d %v, want up to %d %v", i, s.name, upTo, seqs, s.wantUpTo, s.wantPrefix)
		}
		if singles := l.singles(ex, now); !slices.Equal(singles, s.wantSingles) {
			t.Fatalf("step %d (%s): singles %v, want %v", i, s.name, singles, s.wantSingles)
		}
	}
}
