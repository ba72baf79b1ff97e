package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ServiceConfig configures the whole buffer of one process.
type ServiceConfig struct {
	// NATSURL is an external NATS (cluster) to use; empty runs Embedded.
	NATSURL  string
	Embedded EmbeddedConfig
	// Committer.DSN is where writes are applied and committed writes are
	// looked up: the proxy's writer endpoint, or the primary.
	Committer CommitterConfig
	Ingest    IngestConfig
	// Handlers are the kinds of write the buffer accepts and applies; they
	// are given to the ingest and the committer (their own Handlers fields
	// are ignored).
	Handlers Handlers
	// Registerer receives the buffer's metrics (nil: none).
	Registerer prometheus.Registerer
}

// Service is the buffer of one process: JetStream (embedded or not), the
// group-commit log, the index of pending writes, the committer, and the
// HTTP handlers (ingest, write status, dead-letter administration).
type Service struct {
	cfg       ServiceConfig
	log       *slog.Logger
	nats      *Embedded // nil with an external NATS
	nc        *nats.Conn
	js        jetstream.JetStream
	wlog      *Log
	committer *Committer
	index     *pendingIndex
	ingest    *Ingest
	metrics   *metrics
	db        *pgxpool.Pool

	rate   rateMeter
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartService starts NATS (unless external), opens the log, indexes the
// writes still pending from a previous run, and starts the committer. The
// committer connects to PostgreSQL in the background: the buffer accepts
// writes while the database is down, which is its point.
func StartService(ctx context.Context, cfg ServiceConfig, log *slog.Logger) (_ *Service, err error) {
	if len(cfg.Handlers) == 0 {
		return nil, errors.New("buffer: ServiceConfig.Handlers: no kind of write to accept")
	}
	cfg.Committer.Handlers, cfg.Ingest.Handlers = cfg.Handlers, cfg.Handlers
	s := &Service{cfg: cfg, log: log.With("component", "buffer"), index: newPendingIndex()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	url := cfg.NATSURL
	if url == "" {
		if s.nats, err = StartEmbedded(cfg.Embedded); err != nil {
			return nil, err
		}
		url = s.nats.ClientURL()
	}
	// Reconnect forever: the buffer outlives NATS restarts.
	s.nc, err = nats.Connect(url, nats.Name("holdfast-buffer"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectBufSize(64<<20))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}
	if s.wlog, err = OpenLog(ctx, s.nc, cfg.Committer.Log); err != nil {
		return nil, err
	}
	if s.committer, err = NewCommitter(ctx, s.nc, cfg.Committer, log); err != nil {
		return nil, err
	}
	n, err := s.index.scanStream(ctx, s.js, cfg.Committer.Log)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		s.log.Info("writes pending from before the start", "writes", n)
	}
	if cfg.Registerer != nil {
		s.metrics = newMetrics(cfg.Registerer, s)
		s.committer.applied = s.metrics.appliedGroup
	}
	s.committer.settled = s.settled
	s.wlog.SetBacklog(s.index.size)
	s.ingest = NewIngest(s.wlog, cfg.Ingest)
	s.ingest.index, s.ingest.metrics = s.index, s.metrics
	pc, err := pgxpool.ParseConfig(cfg.Committer.DSN)
	if err != nil {
		return nil, fmt.Errorf("buffer database DSN: %w", err)
	}
	pc.MaxConns = 4
	if s.db, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.committer.Run(rctx) }()
	go func() { defer s.wg.Done(); s.rate.run(rctx, &s.committer.Committed) }()
	return s, nil
}

func (s *Service) settled(b settledBatch) {
	s.index.settle(b)
	if s.metrics != nil {
		s.metrics.settled(b)
	}
}

// Submit stores a write of a registered kind durably (what POST /v1/writes
// does, for other routes of the process): nil means it is on disk and will
// be committed once. The caller validates the payload.
func (s *Service) Submit(ctx context.Context, kind, key string, payload []byte) error {
	if _, ok := s.cfg.Handlers.Lookup(kind); !ok {
		return fmt.Errorf("unknown write kind %q", kind)
	}
	start := time.Now()
	if err := s.ingest.store(ctx, Write{Kind: kind, Key: key, Payload: payload, AcceptedAt: start}); err != nil {
		return err
	}
	if s.metrics != nil {
		s.metrics.accepted.Inc()
		s.metrics.ackLatency.Observe(time.Since(start).Seconds())
	}
	return nil
}

// NATSURL is the URL of the NATS server in use.
func (s *Service) NATSURL() string { return s.nc.ConnectedUrl() }

// Close stops the committer, the log and NATS.
func (s *Service) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.wlog != nil {
		s.wlog.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.Close()
	}
}

// WriteStatus is the answer of GET /v1/writes/{key}.
type WriteStatus struct {
	Key         string     `json:"key"`
	Status      string     `json:"status"` // pending, committed or dead
	Kind        string     `json:"kind"`
	Attempts    int        `json:"attempts"`
	LastError   string     `json:"last_error"`
	AcceptedAt  time.Time  `json:"accepted_at"`
	CommittedAt *time.Time `json:"committed_at"`
}

// Write statuses.
const (
	StatusPending   = "pending"
	StatusCommitted = "committed"
	StatusDead      = "dead"
)

// ErrUnknownWrite is returned by Lookup for a key the buffer has no record
// of; ErrLookupUnavailable when it cannot tell (the database is down and
// the key is not pending here).
var (
	ErrUnknownWrite      = errors.New("no write with this key")
	ErrLookupUnavailable = errors.New("the database is unavailable, so a committed write cannot be looked up")
)

// Lookup tells what became of the write of key: committed (in the
// database), dead (in the dead-letter stream) or pending.
func (s *Service) Lookup(ctx context.Context, key string) (WriteStatus, error) {
	ws := WriteStatus{Key: key}
	var committedAt time.Time
	dbErr := s.db.QueryRow(ctx, "SELECT kind, accepted_at, committed_at, attempts FROM holdfast_buffer_applied WHERE key = $1", key).
		Scan(&ws.Kind, &ws.AcceptedAt, &committedAt, &ws.Attempts)
	switch {
	case dbErr == nil:
		ws.Status, ws.CommittedAt = StatusCommitted, &committedAt
		return ws, nil
	case errors.Is(dbErr, pgx.ErrNoRows), isUndefinedTable(dbErr):
		dbErr = nil
	}
	if d, err := findDead(ctx, s.js, s.cfg.Committer, key); err == nil {
		ws.Status, ws.Kind, ws.Attempts, ws.LastError, ws.AcceptedAt = StatusDead, d.Kind, d.Attempts, d.LastError, d.AcceptedAt
		return ws, nil
	} else if !errors.Is(err, ErrNotDead) {
		return ws, err
	}
	if e, ok := s.index.get(key); ok {
		ws.Status, ws.Kind, ws.Attempts, ws.LastError, ws.AcceptedAt = StatusPending, e.kind, e.attempts, e.lastError, e.acceptedAt
		return ws, nil
	}
	if dbErr != nil {
		return ws, fmt.Errorf("%w: %v", ErrLookupUnavailable, dbErr)
	}
	return ws, ErrUnknownWrite
}

// Status is the answer of GET /v1/buffer/status (holdfast buffer status).
type Status struct {
	Pending int `json:"pending"`
	// OldestPendingSeconds is the age of the oldest pending write.
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	// CommittedPerSecond is the commit rate over the last 10 seconds.
	CommittedPerSecond float64 `json:"committed_per_second"`
	Dead               uint64  `json:"dead"`
	// Since the process started:
	Accepted   uint64 `json:"accepted"`
	Committed  uint64 `json:"committed"`
	Duplicates uint64 `json:"duplicates"`
	// TransientRetries counts writes retried after a transient failure.
	TransientRetries uint64 `json:"transient_retries"`
	DeadLettered     uint64 `json:"dead_lettered"`
	// Stream is the JetStream work queue holding pending writes.
	Stream        string `json:"stream"`
	StreamBatches uint64 `json:"stream_batches"`
	StreamBytes   uint64 `json:"stream_bytes"`
	// AwaitingRegions counts batches committed and waiting until every
	// standby region has received them; Redelivered counts batches applied
	// again because the primary changed first (since the process started).
	AwaitingRegions int64  `json:"awaiting_regions"`
	Redelivered     uint64 `json:"redelivered"`
	// Drained: nothing pending, nothing in the stream (every batch applied
	// and acknowledged), nothing waiting for a standby region.
	Drained     bool   `json:"drained"`
	NATS        string `json:"nats"`
	MaxAttempts int    `json:"max_attempts"`
}

// Status reports depths and rates.
func (s *Service) Status(ctx context.Context) (Status, error) {
	n, oldest := s.index.depth()
	st := Status{Pending: n, CommittedPerSecond: s.rate.perSecond(), Accepted: s.wlog.Writes.Load(),
		Committed: s.committer.Committed.Load(), Duplicates: s.committer.Duplicates.Load(),
		AwaitingRegions: s.committer.awaitingRegions.Load(), Redelivered: s.committer.Redelivered.Load(),
		TransientRetries: s.committer.Retried.Load(), DeadLettered: s.committer.Dead.Load(),
		Stream: s.cfg.Committer.Log.Stream, NATS: s.NATSURL(), MaxAttempts: s.cfg.Committer.MaxAttempts}
	if !oldest.IsZero() {
		st.OldestPendingSeconds = time.Since(oldest).Seconds()
	}
	str, err := s.js.Stream(ctx, s.cfg.Committer.Log.Stream)
	if err != nil {
		return st, err
	}
	info := str.CachedInfo() // fetched by Stream
	st.StreamBatches, st.StreamBytes = info.State.Msgs, info.State.Bytes
	st.Drained = st.Pending == 0 && st.StreamBatches == 0 && st.AwaitingRegions == 0
	st.Dead, err = deadCount(ctx, s.js, s.cfg.Committer)
	return st, err
}

// Dead lists dead-lettered writes (limit 0: all).
func (s *Service) Dead(ctx context.Context, limit int) ([]DeadWrite, error) {
	return Dead(ctx, s.js, s.cfg.Committer, limit)
}

// Redrive re-enqueues the dead-lettered write of key.
func (s *Service) Redrive(ctx context.Context, key string) (Write, error) {
	d, err := findDead(ctx, s.js, s.cfg.Committer, key)
	if err != nil {
		return Write{}, err
	}
	// Indexed before it is re-enqueued, as ingest does.
	d.Attempts = 0
	added := s.index.add(d.Write)
	w, err := Redrive(ctx, s.js, s.cfg.Committer, key)
	if err != nil && added {
		s.index.remove(key)
	}
	if err == nil {
		if s.metrics != nil {
			s.metrics.outcomes.WithLabelValues(outcomeRedriven).Inc()
		}
	}
	return w, err
}

// Drop deletes the dead-lettered write of key.
func (s *Service) Drop(ctx context.Context, key string) (Write, error) {
	w, err := Drop(ctx, s.js, s.cfg.Committer, key)
	if err == nil && s.metrics != nil {
		s.metrics.outcomes.WithLabelValues(outcomeDropped).Inc()
	}
	return w, err
}

// rateMeter samples a counter every second and reports its rate over the
// last 10 seconds.
type rateMeter struct {
	mu      sync.Mutex
	samples []rateSample // guarded by mu; oldest first, at most 11
}

type rateSample struct {
	at time.Time
	n  uint64
}

func (r *rateMeter) run(ctx context.Context, c interface{ Load() uint64 }) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.mu.Lock()
		r.samples = append(r.samples, rateSample{time.Now(), c.Load()})
		if len(r.samples) > 11 {
			r.samples = r.samples[1:]
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *rateMeter) perSecond() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 2 {
		return 0
	}
	a, b := r.samples[0], r.samples[len(r.samples)-1]
	return float64(b.n-a.n) / b.at.Sub(a.at).Seconds()
}
