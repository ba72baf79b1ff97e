package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
)

// Store is one cluster's state in etcd. It is safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	cli    *clientv3.Client
	prefix string

	// ctx is cancelled by Close so that watch goroutines end even when their
	// caller's context lives on.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup // watch goroutines
	isShut atomic.Bool    // read without mu on every call

	appends atomic.Uint64 // events appended through this Store; paces trimming
}

// Open connects to etcd. It does not wait for etcd to answer: an agent must
// start (and report, and retry) while the store is unreachable, so
// unavailability shows up as ErrUnavailable from the first call instead.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With("component", "store", "cluster", cfg.Cluster)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Pings notice a dead server (host gone, process stopped) on an
		// otherwise idle watch stream. etcd refuses pings more often than
		// every 5s by default.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: cfg.DialTimeout,
		// The client logs every retry at warn: while etcd is down that is
		// several lines a second, and the caller sees ErrUnavailable anyway.
		Logger: newZapLogger(log.With("component", "etcd-client"), zapcore.ErrorLevel, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("store: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		cfg:    cfg,
		log:    log,
		cli:    cli,
		prefix: "/holdfast/" + cfg.Cluster + "/",
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Close ends all watches started from this Store, waits for their goroutines
// and closes the connection. Leases are not revoked: an agent that wants its
// keys gone at once calls RevokeLease first; otherwise they expire with the TTL.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.isShut.Store(true)
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("store: close etcd client: %w", err)
	}
	return nil
}

// Client returns the underlying etcd client, for tools and tests. Writes
// through it bypass every invariant this package keeps.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix of this cluster, "/holdfast/<cluster>/".
func (s *Store) Prefix() string { return s.prefix }

// Config returns the effective configuration (defaults applied).
func (s *Store) Config() Config { return s.cfg }

// call prepares the context of one request: bounded by RequestTimeout, and
// failing fast with "no leader" instead of waiting when the etcd member we
// talk to is cut off from its cluster.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.isShut.Load() {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	return clientv3.WithRequireLeader(ctx), cancel, nil
}

// goWatch starts a goroutine owned by the Store. The returned context ends
// when either ctx ends or the Store is closed. ok is false after Close.
func (s *Store) goWatch(ctx context.Context, run func(ctx context.Context)) (ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	go func() {
		defer s.wg.Done()
		defer stop()
		defer cancel()
		run(ctx)
	}()
	return true
}

// backoff is the retry delay of the watch loops: quick first retries for a
// blip, capped so that a long outage costs one attempt every few seconds.
type backoff struct{ next time.Duration }

const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 3 * time.Second
)

func (b *backoff) delay() time.Duration {
	if b.next < backoffMin {
		b.next = backoffMin
	}
	d := b.next
	b.next = min(2*b.next, backoffMax)
	return d
}

func (b *backoff) reset() { b.next = 0 }
