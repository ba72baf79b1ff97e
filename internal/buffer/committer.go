package buffer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/holdfast/holdfast/internal/wait"
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
	// Handlers apply the writes, by kind (ServiceConfig.Handlers).
	Handlers Handlers
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
// regions. Past it JetStream delivers nothing more and the committer stops
// committing: at 2,000 writes/s in batches of a few writes, 100,000 batches
// let a standby region fall behind for minutes before that happens. A
// batch waiting for a region is kept without its payloads (keys and times
// only: tens of bytes a write).
const maxDelayedBatches = 100000

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
	// applied, if set, hears of each group transaction that committed:
	// its batches, its writes and how long it took (retries included).
	applied func(batches, writes int, took time.Duration)

	// Committed counts the writes of acknowledged batches, once each:
	// Applied those applied by the acknowledged attempt, Duplicates those
	// found applied before (an earlier attempt whose acknowledgement did
	// not happen, or a batch sent back after a primary change). Retried
	// counts writes of groups retried after a transient failure, Dead
	// writes dead-lettered; Redelivered counts batches sent back because
	// the primary changed before the standby regions had them.
	Committed, Applied, Duplicates, Retried, Dead, Redelivered atomic.Uint64
	// AckedByPurge counts the batches acknowledged by purges of the stream
	// (see ledger), AckedSingly those acknowledged one by one, and Purges
	// the purges.
	AckedByPurge, AckedSingly, Purges atomic.Uint64
	// Purging says whether the last look at the consumer found this
	// committer alone holding what is pending (acknowledging by purges).
	Purging atomic.Bool

	// stream is the log's stream (purged up to what is acknowledged), and
	// ledger what this committer holds of it; ackNow wakes ackLoop.
	stream jetstream.Stream
	ledger ledger
	ackNow chan struct{}
	// deliveryMu is held while a fetch is out and its deliveries are not
	// yet in the ledger, and while the consumer's state is compared with
	// the ledger: a batch delivered and not yet recorded would make the
	// two differ for a moment.
	deliveryMu sync.Mutex
	// ackWarn keeps failed acknowledgements (tried again every tick) from
	// flooding the log.
	ackWarn logLimit

	// acked remembers the batches acknowledged lately, so that a batch
	// delivered twice is counted once (count runs from ackLoop and its
	// one-by-one acknowledgements; ackedSeqs has its own lock).
	acked ackedSeqs

	// pendingAcks feeds regionAckLoop; awaitingRegions is its queue length.
	pendingAcks     chan []committed
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
	stream, err := js.Stream(ctx, cfg.Log.Stream)
	if err != nil {
		return nil, fmt.Errorf("write buffer stream %s: %w", cfg.Log.Stream, err)
	}
	return &Committer{cfg: cfg, js: js, cons: cons, stream: stream, log: log.With("component", "committer"),
		pendingAcks: make(chan []committed, 64), ackNow: make(chan struct{}, 1)}, nil
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
	// The baseline for acknowledging by purges: nothing pending yet (a
	// previous committer's batches delivered and not acknowledged wait
	// for the next time nothing is pending).
	c.observe(ctx)
	{
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.ackLoop(actx) }()
		defer func() { stop(); <-done }()
	}
	if c.cfg.Replication != nil {
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.regionAckLoop(actx) }()
		defer func() { stop(); <-done }()
	}
	for ctx.Err() == nil {
		if c.ledger.needsBaseline(time.Now()) {
			c.makeWayForBaseline(ctx)
		}
		msgs, err := c.fetchGroup()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.log.Warn("fetching writes", "err", err)
			wait.Sleep(ctx, c.cfg.RetryBase)
			continue
		}
		if len(msgs) > 0 {
			c.handleGroup(ctx, msgs)
		}
	}
	return nil
}

// makeWayForBaseline stops fetching until every batch held is
// acknowledged (at most ledgerBaselineWait), then reads the consumer's
// state: with nothing pending, a new baseline for purges (see ledger).
func (c *Committer) makeWayForBaseline(ctx context.Context) {
	deadline := time.Now().Add(ledgerBaselineWait)
	for c.ledger.size() > 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		wait.Sleep(ctx, 20*time.Millisecond)
	}
	c.observe(ctx)
}

// observe reads the consumer's state into the ledger, and says when the
// committer starts or stops acknowledging by purges.
func (c *Committer) observe(ctx context.Context) bool {
	c.deliveryMu.Lock()
	ci, err := c.cons.Info(ctx)
	if err != nil {
		c.deliveryMu.Unlock()
		return false
	}
	ex := c.ledger.observe(ci.NumAckPending, ci.Delivered.Consumer)
	c.deliveryMu.Unlock()
	if was := c.Purging.Swap(ex); was != ex {
		if ex {
			c.log.Info("acknowledging by purges: this committer alone holds what is pending")
		} else {
			c.log.Info("acknowledging one by one: another process holds batches of the queue, or a delivery was lost; purges resume once nothing is pending",
				"pending", ci.NumAckPending, "held", c.ledger.size())
		}
	}
	return ex
}

// ledgerBaselineWait bounds how long the committer stops fetching for a
// baseline.
const ledgerBaselineWait = 2 * time.Second

// maxGroupBatches and maxGroupBytes bound the batches applied in one
// transaction. A backlog (after an outage, or batches sent back after a
// primary change) drains in groups: one statement for the keys, one
// commit (and its wait for the synchronous standbys) per group instead of
// per batch. 512 batches of the few writes each that a backlog built
// during faults holds are about 3,000 writes: with 128, recovering
// members' load made each group's fixed costs (the commit's wait above
// all) what bounded the drain after faults.
const (
	maxGroupBatches = 512
	maxGroupBytes   = 16 << 20
	fetchChunk      = 128
)

// fetchWait is how long the committer waits for a batch before it asks
// again. Acknowledgements by purge wait while a fetch is out (see
// deliveryMu), so this is also how late the last batches before an idle
// spell are acknowledged.
const fetchWait = 250 * time.Millisecond

// fetchGroup waits up to fetchWait for one batch, then takes what else is
// already waiting, without waiting for more, and records each delivery in
// the ledger.
func (c *Committer) fetchGroup() ([]fetched, error) {
	c.deliveryMu.Lock()
	defer c.deliveryMu.Unlock()
	first, err := c.cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	// What else waits, in chunks, up to maxGroupBatches batches or
	// maxGroupBytes of them.
	size := len(msgs[0].Data())
	for len(msgs) < maxGroupBatches && size < maxGroupBytes {
		more, err := c.cons.FetchNoWait(min(fetchChunk, maxGroupBatches-len(msgs)))
		if err != nil {
			break
		}
		n := 0
		for m := range more.Messages() {
			msgs = append(msgs, m)
			size += len(m.Data())
			n++
		}
		if n == 0 {
			break
		}
	}
	now := time.Now()
	out := make([]fetched, 0, len(msgs))
	for _, m := range msgs {
		f := fetched{msg: m}
		if f.md, err = m.Metadata(); err != nil {
			c.log.Error("a batch without JetStream metadata: sent back", "err", err)
			_ = m.Nak()
			continue
		}
		f.verdict = c.ledger.deliver(f.md.Sequence.Stream, f.md.Sequence.Consumer, m, now)
		out = append(out, f)
	}
	return out, nil
}

// fetched is one delivery and what the ledger made of it.
type fetched struct {
	msg     jetstream.Msg
	md      *jetstream.MsgMetadata
	verdict delivery
}

// groupItem is one batch of a group: its message and writes.
type groupItem struct {
	msg jetstream.Msg
	seq uint64 // stream sequence
	ws  []Write
}

// handleGroup applies fetched batches: fresh ones together in one
// transaction, a batch carrying writes that failed before on its own (so
// that its retry delay and its failures stay its own).
func (c *Committer) handleGroup(ctx context.Context, msgs []fetched) {
	var fresh []groupItem
	now := time.Now()
	for _, f := range msgs {
		if f.verdict != deliverApply {
			continue // acknowledged already, or about to be: applied here before
		}
		msg, md, seq := f.msg, f.md, f.md.Sequence.Stream
		ws, err := decodeBatch(msg.Data())
		if err != nil {
			c.log.Error("undecodable batch: dropped", "seq", seq, "err", err)
			c.ledger.settle(seq, settledBatch{commitTime: now}, now)
			c.wakeAcks()
			continue
		}
		// Writes that failed permanently wait before their next attempt, as
		// the dead-letter limit is meant to span time, not a burst of retries.
		if wait := time.Until(md.Timestamp.Add(permanentRetryDelay(ws, c.cfg.RetryBase, c.cfg.RetryMax))); wait > 0 {
			c.ledger.set(seq, heldReturned)
			_ = msg.NakWithDelay(wait)
			continue
		}
		it := groupItem{msg: msg, seq: seq, ws: ws}
		if retried(ws) {
			if !c.applyGroup(ctx, []groupItem{it}) {
				return
			}
			continue
		}
		fresh = append(fresh, it)
	}
	if len(fresh) > 0 {
		c.applyGroup(ctx, fresh)
	}
}

func retried(ws []Write) bool {
	for _, w := range ws {
		if w.Attempts > 0 {
			return true
		}
	}
	return false
}

// errServerChanged says the COMMIT was answered by another server
// incarnation than the one that ran the transaction: the proxy resolved a
// COMMIT lost with its server. Whether that commit is durable on the new
// primary's quorum is not known, so the group is applied again there (what
// is already applied is found and kept, and the new transaction's own
// commit waits for the synchronous standbys).
var errServerChanged = errors.New("the server changed between the transaction and its commit position")

// applyGroup applies the writes of items in one transaction, retrying
// transient failures, and hands each batch on to be acknowledged. False
// means ctx ended (nothing acknowledged: JetStream redelivers).
func (c *Committer) applyGroup(ctx context.Context, items []groupItem) bool {
	var ws []Write
	for _, it := range items {
		ws = append(ws, it.ws...)
	}
	var out []Outcome
	var pos Position
	var err error
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var stamp serverStamp
		if out, stamp, err = c.apply(ctx, ws); err == nil {
			// Where the commit ended, for the standby regions to reach, on
			// the server that committed it.
			var at serverStamp
			if pos, at, err = commitPosition(ctx, c.conn); err == nil && at != stamp {
				err = fmt.Errorf("%w: %s, then %s", errServerChanged, stamp, at)
			}
		}
		if err == nil {
			break
		}
		// Transient (or the connection is gone): retry the whole group,
		// without counting it against any write.
		c.Retried.Add(uint64(len(ws)))
		c.log.Info("applying writes failed; retrying", "writes", len(ws), "batches", len(items), "attempt", attempt, "err", err)
		for _, it := range items {
			_ = it.msg.InProgress()
		}
		wait.Sleep(ctx, Backoff(attempt, c.cfg.RetryBase, c.cfg.RetryMax))
		if ctx.Err() != nil {
			return false // not acknowledged: redelivered to the next committer
		}
	}
	if c.afterCommit != nil && c.afterCommit() {
		return false
	}
	commitTime := time.Now()
	if c.applied != nil {
		c.applied(len(items), len(ws), commitTime.Sub(start))
	}
	var acks []committed
	off := 0
	for _, it := range items {
		b := settledBatch{commitTime: commitTime}
		for i, o := range out[off : off+len(it.ws)] {
			w := it.ws[i]
			switch {
			case o.Applied:
				b.applied = append(b.applied, w)
			case o.Duplicate:
				b.duplicates++
				b.applied = append(b.applied, w)
			case o.Err != nil:
				w.Attempts++
				w.LastError = o.Err.Error()
				if w.Attempts >= c.cfg.MaxAttempts {
					b.dead = append(b.dead, w)
				} else {
					b.again = append(b.again, w)
				}
			}
		}
		off += len(it.ws)
		if !c.handOn(ctx, it, b) {
			// Not acknowledged: sent back, to be applied again.
			c.ledger.set(it.seq, heldReturned)
			_ = it.msg.Nak()
			continue
		}
		acks = append(acks, committed{msg: it.msg, seq: it.seq, pos: pos, batch: b.withoutPayloads()})
	}
	if c.cfg.Replication != nil {
		for _, a := range acks {
			c.ledger.set(a.seq, heldAwaiting)
		}
		select {
		case c.pendingAcks <- acks:
		case <-ctx.Done():
			return false
		}
		return true
	}
	now := time.Now()
	for _, a := range acks {
		c.ledger.settle(a.seq, a.batch, now)
	}
	c.wakeAcks()
	return true
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
	if err := Migrate(ctx, conn, c.cfg.Handlers); err != nil {
		_ = conn.Close(ctx)
		return err
	}
	c.conn = conn
	return nil
}

// apply runs applyBatch on the committer's connection, (re)connecting as
// needed.
func (c *Committer) apply(ctx context.Context, ws []Write) ([]Outcome, serverStamp, error) {
	if err := c.connect(ctx); err != nil {
		return nil, serverStamp{}, err
	}
	out, stamp, err := applyBatch(ctx, c.conn, c.cfg.Handlers, ws)
	if err != nil && !errors.Is(err, context.Canceled) {
		// A failed transaction may leave the connection unusable.
		if c.conn.IsClosed() || !Transient(err) {
			_ = c.conn.Close(ctx)
			c.conn = nil
		}
	}
	return out, stamp, err
}

// keyHash names a key in a subject (keys may hold any character).
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func deadSubject(prefix, key string) string { return prefix + "." + keyHash(key) }
