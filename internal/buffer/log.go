package buffer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LogConfig names the stream and bounds the batches.
type LogConfig struct {
	Stream  string // JetStream stream name
	Subject string // subject batches are published on
	// Replicas of the stream: 1 on one host, 3 on an external NATS cluster.
	Replicas int
	// MaxBatchWrites and MaxBatchBytes bound one group commit.
	MaxBatchWrites int
	MaxBatchBytes  int
	// PublishTimeout bounds how long a batch is retried (NATS restarting,
	// a JetStream leader election) before its writes fail.
	PublishTimeout time.Duration
	// Publishers is how many batches may be in flight at once: while one
	// is being stored, the next is gathered and sent (default 1: measured, a second one only made batches smaller).
	Publishers int
}

// DefaultLogConfig is what holdfast up uses.
func DefaultLogConfig() LogConfig {
	return LogConfig{Stream: "HOLDFAST_WRITES", Subject: "holdfast.writes", Replicas: 1,
		MaxBatchWrites: 1024, MaxBatchBytes: 1 << 20, PublishTimeout: 10 * time.Second, Publishers: 1}
}

// ErrClosed is returned by Append once the log is closed.
var ErrClosed = errors.New("write buffer closed")

// Log appends writes to JetStream durably. Concurrent Appends are grouped:
// while one batch is being published (and fsynced), the writes that arrive
// queue up and go together in the next one. A write is acknowledged (Append
// returns nil) only once JetStream has stored its batch.
type Log struct {
	js   jetstream.JetStream
	cfg  LogConfig
	reqs chan *appendReq
	stop chan struct{}
	done chan struct{}
	seq  atomic.Uint64 // batch ids, with the start time: the publish dedup id
	boot string

	// Batches and Writes count what was stored (for tests and metrics).
	Batches, Writes atomic.Uint64

	// backlog, when set, tells how many writes wait to be applied (see
	// lingerBacklog).
	backlog atomic.Pointer[func() int]
}

// While the committer is behind (a database outage, batches sent back
// after a primary change), a batch of fewer than lingerWrites writes waits
// for more: as long as another write comes within lingerGap of the last,
// and at most lingerMax. Every batch costs the committer a fetch, a decode
// and its tracking, and, when it cannot acknowledge by purge (see ledger),
// a removal from the work queue fsynced on its own: with nothing holding
// the group commit up, writes at 2,000/s are stored one or two per batch,
// and a backlog of such batches acknowledged one by one drained at a few
// hundred batches per second on a loaded 2-core machine, slower than the
// writes came in. The wait is short
// because it is also the writers' (16 writers that each wait 10 ms more
// per write cannot write 2,000/s), and it only ever delays a write that
// would wait behind lingerBacklog others before being applied.
const (
	lingerBacklog = 2000
	lingerWrites  = 64
	lingerGap     = time.Millisecond
	lingerMax     = 4 * time.Millisecond
)

// SetBacklog tells the log how to read the committer's backlog (writes
// accepted and not yet applied), to gather bigger batches while it is
// behind.
func (l *Log) SetBacklog(f func() int) { l.backlog.Store(&f) }

// behind reports whether the committer's backlog is long enough for a
// batch to wait for more writes.
func (l *Log) behind() bool {
	f := l.backlog.Load()
	return f != nil && (*f)() >= lingerBacklog
}

type appendReq struct {
	w   Write
	res chan error
}

// OpenLog creates or updates the stream and starts the group committer.
func OpenLog(ctx context.Context, nc *nats.Conn, cfg LogConfig) (*Log, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     cfg.Stream,
		Subjects: []string{cfg.Subject},
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
		// A write stays until the committer has applied it.
		Retention: jetstream.WorkQueuePolicy,
		// A batch retried after a lost acknowledgement is stored once.
		Duplicates: 2 * time.Minute,
		MaxMsgSize: int32(cfg.MaxBatchBytes + 64<<10),
	})
	if err != nil {
		return nil, fmt.Errorf("write buffer stream %s: %w", cfg.Stream, err)
	}
	l := &Log{js: js, cfg: cfg, reqs: make(chan *appendReq, 4*cfg.MaxBatchWrites), stop: make(chan struct{}), done: make(chan struct{}),
		boot: strconv.FormatInt(time.Now().UnixNano(), 36)}
	n := max(cfg.Publishers, 1)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); l.run() }()
	}
	go func() { wg.Wait(); close(l.done) }()
	return l, nil
}

// Append stores w durably. An error means the write may or may not be
// stored (the caller retries with the same key: it applies once).
func (l *Log) Append(ctx context.Context, w Write) error {
	if size := writeSize(w); size > l.cfg.MaxBatchBytes {
		return fmt.Errorf("write of %d bytes exceeds the batch limit of %d", size, l.cfg.MaxBatchBytes)
	}
	r := &appendReq{w: w, res: make(chan error, 1)}
	select {
	case l.reqs <- r:
	case <-l.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the committer; writes not yet stored fail with ErrClosed.
func (l *Log) Close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func writeSize(w Write) int { return len(w.Kind) + len(w.Key) + len(w.Payload) + 32 }

// run is one publisher: it gathers the writes queued while it was busy
// into a batch and stores it.
func (l *Log) run() {
	var (
		batch  []*appendReq
		writes []Write
		buf    []byte
	)
	// commit stores the batch and answers its writers.
	commit := func() {
		writes = writes[:0]
		for _, r := range batch {
			writes = append(writes, r.w)
		}
		err := l.publish(writes, &buf)
		for _, r := range batch {
			r.res <- err
		}
		batch = batch[:0]
	}
	linger := time.NewTimer(0)
	<-linger.C
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-l.stop:
			l.failQueued()
			return
		}
		size := writeSize(batch[0].w)
		add := func(r *appendReq) {
			if size+writeSize(r.w) > l.cfg.MaxBatchBytes {
				commit() // r starts the next batch
				size = 0
			}
			batch = append(batch, r)
			size += writeSize(r.w)
		}
	fill:
		for len(batch) < l.cfg.MaxBatchWrites {
			select {
			case r := <-l.reqs:
				add(r)
			default:
				break fill
			}
		}
		if len(batch) < min(lingerWrites, l.cfg.MaxBatchWrites) && l.behind() {
			deadline := time.Now().Add(lingerMax)
		wait:
			for len(batch) < min(lingerWrites, l.cfg.MaxBatchWrites) {
				linger.Reset(min(lingerGap, time.Until(deadline)))
				select {
				case r := <-l.reqs:
					add(r)
					linger.Stop()
				case <-linger.C:
					break wait
				case <-l.stop:
					linger.Stop()
					break wait
				}
			}
		}
		commit()
	}
}

// attemptTimeout bounds one publish attempt of a batch.
const attemptTimeout = 2 * time.Second

// publish stores one batch, retrying with the same message id (stored
// once) until PublishTimeout.
func (l *Log) publish(ws []Write, buf *[]byte) error {
	*buf = appendBatch((*buf)[:0], ws)
	id := l.boot + "-" + strconv.FormatUint(l.seq.Add(1), 36)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.PublishTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for {
		// Each attempt gets its own deadline: a publish sent while the
		// server was restarting (buffered by the client, or dropped while
		// JetStream recovers) may never be answered.
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := l.js.Publish(actx, l.cfg.Subject, *buf, jetstream.WithMsgID(id))
		acancel()
		if err == nil {
			l.Batches.Add(1)
			l.Writes.Add(uint64(len(ws)))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storing %d writes in JetStream: %w", len(ws), err)
		case <-l.stop:
			return ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// failQueued answers the writes still queued at Close.
func (l *Log) failQueued() {
	for {
		select {
		case r := <-l.reqs:
			r.res <- ErrClosed
		default:
			return
		}
	}
}
