package buffer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pendingIndex knows the writes accepted and not yet settled (committed
// or dead-lettered): it answers GET /v1/writes/{key} for pending writes and
// gives the pending depth and the age of the oldest pending write. It is
// fed by ingest (before the write is stored, so that the committer's
// settlement always comes after), by the committer's outcomes, and at
// start by a scan of the stream (before the committer starts).
//
// Settled writes are looked up elsewhere: committed ones in PostgreSQL,
// dead ones in the dead-letter stream.
type pendingIndex struct {
	mu   sync.Mutex
	m    map[string]*pendingEntry // guarded by mu
	fifo []*pendingEntry          // acceptance order; settled entries are popped lazily
	head int
}

type pendingEntry struct {
	key        string
	kind       string
	acceptedAt time.Time
	attempts   int
	lastError  string
	settled    bool
}

func newPendingIndex() *pendingIndex { return &pendingIndex{m: map[string]*pendingEntry{}} }

// add records w as pending; a key already pending keeps its first entry
// (and add reports false).
func (x *pendingIndex) add(w Write) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, added := x.addLocked(w)
	return added
}

func (x *pendingIndex) addLocked(w Write) (*pendingEntry, bool) {
	if e, ok := x.m[w.Key]; ok {
		return e, false
	}
	e := &pendingEntry{key: w.Key, kind: w.Kind, acceptedAt: w.AcceptedAt, attempts: w.Attempts, lastError: w.LastError}
	x.m[w.Key] = e
	x.fifo = append(x.fifo, e)
	return e, true
}

// remove forgets key (settled, or never stored).
func (x *pendingIndex) remove(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(key)
}

func (x *pendingIndex) removeLocked(key string) {
	if e, ok := x.m[key]; ok {
		e.settled = true
		delete(x.m, key)
	}
}

// settle applies a committer outcome.
func (x *pendingIndex) settle(b settledBatch) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, w := range b.applied {
		x.removeLocked(w.Key)
	}
	for _, w := range b.dead {
		x.removeLocked(w.Key)
	}
	for _, w := range b.again {
		e, _ := x.addLocked(w)
		e.attempts, e.lastError = w.Attempts, w.LastError
	}
	x.popSettledLocked()
}

// popSettledLocked drops settled entries from the head of the fifo (writes
// settle roughly in acceptance order, so this keeps it short) and compacts
// it now and then.
func (x *pendingIndex) popSettledLocked() {
	for x.head < len(x.fifo) && x.fifo[x.head].settled {
		x.fifo[x.head] = nil
		x.head++
	}
	if x.head > 1024 && x.head > len(x.fifo)/2 {
		x.fifo = append(x.fifo[:0:0], x.fifo[x.head:]...)
		x.head = 0
	}
}

// get returns the pending write of key.
func (x *pendingIndex) get(key string) (pendingEntry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.m[key]
	if !ok {
		return pendingEntry{}, false
	}
	return *e, true
}

// size is the number of pending writes.
func (x *pendingIndex) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.m)
}

// depth returns the number of pending writes and when the oldest was
// accepted (zero when none is pending).
func (x *pendingIndex) depth() (int, time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.popSettledLocked()
	if x.head == len(x.fifo) {
		return len(x.m), time.Time{}
	}
	// The fifo is in acceptance order except for writes re-enqueued with
	// an older acceptance time, which are the oldest anyway if they are
	// at the head; a re-enqueued write further back only makes the age an
	// underestimate until the writes before it settle.
	return len(x.m), x.fifo[x.head].acceptedAt
}

// scanStream adds every write still in the work-queue stream (accepted,
// not yet settled) to x. It runs before the committer starts.
func (x *pendingIndex) scanStream(ctx context.Context, js jetstream.JetStream, cfg LogConfig) (writes int, err error) {
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return 0, err
	}
	info := s.CachedInfo() // fetched by Stream
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(cfg.Subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // nothing at or after seq
		}
		if err != nil {
			return writes, fmt.Errorf("scanning pending writes at sequence %d: %w", seq, err)
		}
		ws, err := decodeBatch(m.Data)
		if err == nil {
			x.mu.Lock()
			for _, w := range ws {
				e, _ := x.addLocked(w)
				e.attempts, e.lastError = max(e.attempts, w.Attempts), w.LastError
			}
			x.mu.Unlock()
			writes += len(ws)
		}
		seq = m.Sequence + 1
	}
	return writes, nil
}
