package buffer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CommitterConfig configures the committer.
type CommitterConfig struct {
	// DSN is where writes are applied: the proxy's writer endpoint (or the
	// primary when no proxy runs).
	DSN string
	// Log is the stream the writes are in; DeadStream receives writes that
	// failed permanently MaxAttempts times, one message per write on
	// DeadSubject.<hash of its key> (so a key's fate can be looked up).
	Log                     LogConfig
	DeadStream, DeadSubject string
	Consumer                string
	MaxAttempts             int
	// RetryBase and RetryMax bound the backoff of transient failures.
	RetryBase, RetryMax time.Duration
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers a batch (the committer extends it while retrying).
	AckWait time.Duration
	// Replication, when set, holds each batch's acknowledgement until the
	// leader of every standby region has received its commit (or the
	// primary changed, and it is applied again): a region failover then
	// loses no acknowledged write. Nil acknowledges at once.
	Replication func(context.Context) (Replication, error)
}

// DefaultCommitterConfig is what holdfast up uses (DSN aside).
func DefaultCommitterConfig(dsn string) CommitterConfig {
	return CommitterConfig{DSN: dsn, Log: DefaultLogConfig(), DeadStream: "HOLDFAST_DEAD", DeadSubject: "holdfast.dead",
		Consumer: "committer", MaxAttempts: 25, RetryBase: 50 * time.Millisecond, RetryMax: 5 * time.Second, AckWait: 30 * time.Second}
}

// maxDelayedBatches bounds the batches of permanently failed writes waiting
// for their next attempt, and of applied ones waiting for the standby
// regions.
const maxDelayedBatches = 10000

// settledBatch is what became of one batch's writes.
type settledBatch struct {
	applied    []Write // applied now, or found applied before (a redelivery)
	again      []Write // failed permanently, re-enqueued for a later attempt
	dead       []Write // failed permanently MaxAttempts times: dead-lettered
	duplicates int
	commitTime time.Time
}

// Committer applies the writes in the log to PostgreSQL, exactly once.
type Committer struct {
	cfg  CommitterConfig
	js   jetstream.JetStream
	cons jetstream.Consumer
	log  *slog.Logger
	conn *pgx.Conn

	// afterCommit, if set, runs between the database commit of a batch and
	// its acknowledgement to JetStream; true stops there, as a crash would
	// (tests).
	afterCommit func() bool
	// settled, if set, hears what became of a batch once it is
	// acknowledged: the writes applied (or found applied before), those
	// re-enqueued after a permanent failure and those dead-lettered.
	settled func(b settledBatch)

	// Applied, Duplicates, Retried and Dead count writes; Redelivered
	// counts batches applied again because the primary changed before the
	// standby regions had them.
	Applied, Duplicates, Retried, Dead, Redelivered atomic.Uint64

	// pendingAcks feeds regionAckLoop; awaitingRegions is its queue length.
	pendingAcks     chan committed
	awaitingRegions atomic.Int64
}

// NewCommitter creates the dead-letter stream and the durable consumer.
func NewCommitter(ctx context.Context, nc *nats.Conn, cfg CommitterConfig, log *slog.Logger) (*Committer, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := ensureDeadStream(ctx, js, cfg); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Log.Stream, jetstream.ConsumerConfig{
		Durable: cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait,
		// Batches are fetched one at a time; the allowance is for retried
		// batches waiting out their delay (negatively acknowledged).
		MaxAckPending: maxDelayedBatches,
	})
	if err != nil {
		return nil, fmt.Errorf("committer consumer on %s: %w", cfg.Log.Stream, err)
	}
	return &Committer{cfg: cfg, js: js, cons: cons, log: log.With("component", "committer"), pendingAcks: make(chan committed, 64)}, nil
}

// Run applies batches until ctx ends.
func (c *Committer) Run(ctx context.Context) error {
	defer func() {
		if c.conn != nil {
			_ = c.conn.Close(context.Background())
		}
	}()
	// Create the tables now rather than at the first write, so that
	// readers find them; if the database is down, the first batch retries.
	if err := c.connect(ctx); err != nil {
		c.log.Info("database not reachable yet; writes are accepted and wait", "err", err)
	}
	if c.cfg.Replication != nil {
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.regionAckLoop(actx) }()
		defer func() { stop(); <-done }()
	}
	for ctx.Err() == nil {
		batch, err := c.cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.log.Warn("fetching writes", "err", err)
			sleepCtx(ctx, c.cfg.RetryBase)
			continue
		}
		for msg := range batch.Messages() {
			c.handle(ctx, msg)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle applies one batch and acknowledges it once every write in it is
// applied, a duplicate, or durably handed on (retried later or
// dead-lettered).
func (c *Committer) handle(ctx context.Context, msg jetstream.Msg) {
	ws, err := decodeBatch(msg.Data())
	if err != nil {
		c.log.Error("undecodable batch: dropped", "err", err)
		_ = msg.Term()
		return
	}
	// Writes that failed permanently wait before their next attempt, as
	// the dead-letter limit is meant to span time, not a burst of retries.
	if md, err := msg.Metadata(); err == nil {
		if wait := time.Until(md.Timestamp.Add(permanentRetryDelay(ws, c.cfg.RetryBase, c.cfg.RetryMax))); wait > 0 {
			_ = msg.NakWithDelay(wait)
			return
		}
	}
	var out []Outcome
	var pos Position
	for attempt := 1; ; attempt++ {
		if out, err = c.apply(ctx, ws); err == nil && c.cfg.Replication != nil {
			// Where the commit ended, for the standby regions to reach.
			pos, err = commitPosition(ctx, c.conn)
		}
		if err == nil {
			break
		}
		// Transient (or the connection is gone): retry the whole batch,
		// without counting it against any write.
		c.Retried.Add(uint64(len(ws)))
		c.log.Info("applying writes failed; retrying", "writes", len(ws), "attempt", attempt, "err", err)
		_ = msg.InProgress()
		sleepCtx(ctx, Backoff(attempt, c.cfg.RetryBase, c.cfg.RetryMax))
		if ctx.Err() != nil {
			return // not acknowledged: redelivered to the next committer
		}
	}
	if c.afterCommit != nil && c.afterCommit() {
		return
	}
	commitTime := time.Now()
	var applied, again, dead []Write
	duplicates := 0
	for i, o := range out {
		switch {
		case o.Applied:
			c.Applied.Add(1)
			applied = append(applied, ws[i])
		case o.Duplicate:
			c.Duplicates.Add(1)
			duplicates++
			applied = append(applied, ws[i])
		case o.Err != nil:
			w := ws[i]
			w.Attempts++
			w.LastError = o.Err.Error()
			if w.Attempts >= c.cfg.MaxAttempts {
				dead = append(dead, w)
			} else {
				again = append(again, w)
			}
		}
	}
	// Hand failed writes on durably before acknowledging their batch.
	seq := msgSeq(msg)
	if len(again) > 0 {
		id := fmt.Sprintf("retry-%d", seq)
		if _, err := c.js.Publish(ctx, c.cfg.Log.Subject, appendBatch(nil, again), jetstream.WithMsgID(id)); err != nil {
			c.log.Warn("re-enqueueing failed writes; the batch will be redelivered", "err", err)
			return
		}
	}
	for _, w := range dead {
		id := fmt.Sprintf("dead-%d-%s", seq, keyHash(w.Key))
		if _, err := c.js.Publish(ctx, deadSubject(c.cfg.DeadSubject, w.Key), appendBatch(nil, []Write{w}), jetstream.WithMsgID(id)); err != nil {
			c.log.Warn("dead-lettering a write; the batch will be redelivered", "err", err)
			return
		}
	}
	c.Dead.Add(uint64(len(dead)))
	for _, w := range dead {
		c.log.Warn("write dead-lettered", "key", w.Key, "kind", w.Kind, "attempts", w.Attempts, "err", w.LastError)
	}
	if c.cfg.Replication != nil {
		select {
		case c.pendingAcks <- committed{msg: msg, pos: pos}:
		case <-ctx.Done():
			return
		}
	} else if err := msg.DoubleAck(ctx); err != nil {
		c.log.Warn("acknowledging a batch; it will be redelivered (no second effect)", "err", err)
	}
	if c.settled != nil {
		c.settled(settledBatch{applied: applied, again: again, dead: dead, duplicates: duplicates, commitTime: commitTime})
	}
}

// permanentRetryDelay is how long after its re-enqueueing a batch of
// permanently failed writes waits: base doubled per attempt, capped at max
// (with the defaults, 25 attempts span about a minute and a half). Fresh
// writes (no attempt yet) do not wait.
func permanentRetryDelay(ws []Write, base, max time.Duration) time.Duration {
	attempts := 0
	for i, w := range ws {
		if i == 0 || w.Attempts < attempts {
			attempts = w.Attempts
		}
	}
	if attempts <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

func msgSeq(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// connect opens the committer's connection and creates the tables, unless
// it is open.
func (c *Committer) connect(ctx context.Context) error {
	if c.conn != nil && !c.conn.IsClosed() {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, c.cfg.DSN)
	cancel()
	if err != nil {
		return err
	}
	if err := Migrate(ctx, conn); err != nil {
		_ = conn.Close(ctx)
		return err
	}
	c.conn = conn
	return nil
}

// apply runs applyBatch on the committer's connection, (re)connecting as
// needed.
func (c *Committer) apply(ctx context.Context, ws []Write) ([]Outcome, error) {
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	out, err := applyBatch(ctx, c.conn, ws)
	if err != nil && !errors.Is(err, context.Canceled) {
		// A failed transaction may leave the connection unusable.
		if c.conn.IsClosed() || !Transient(err) {
			_ = c.conn.Close(ctx)
			c.conn = nil
		}
	}
	return out, err
}

// keyHash names a key in a subject (keys may hold any character).
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func deadSubject(prefix, key string) string { return prefix + "." + keyHash(key) }
