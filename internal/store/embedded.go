package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// EmbedConfig configures a single-node etcd run inside the holdfast process
// (`holdfast up`, tests). Beyond one machine, use an external etcd cluster.
type EmbedConfig struct {
	Name    string
	DataDir string
	// ClientURL and PeerURL are where etcd listens, e.g. http://127.0.0.1:2379
	// and http://127.0.0.1:2380.
	ClientURL, PeerURL string
	// HeartbeatInterval and ElectionTimeout are raft's tick and election
	// timeout. etcd refuses lease TTLs below 1.5 election timeouts, so the
	// short defaults (50ms / 500ms) are what let a 1-2s lease TTL be honoured
	// instead of silently raised; with one node there are no peers for a
	// short heartbeat to overload.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// LogLevel is the lowest etcd (zap) level forwarded to our logger:
	// debug, info, warn or error (default).
	LogLevel string
	// CompactionRetention is how much history etcd keeps (periodic
	// compaction). Watchers that fall further behind resynchronise.
	CompactionRetention time.Duration
	// NoFsync disables fsync in etcd. For tests only: a crash loses data.
	NoFsync bool
}

// DefaultEmbedConfig returns the defaults; DataDir must still be set.
func DefaultEmbedConfig() EmbedConfig {
	return EmbedConfig{
		Name:                "holdfast",
		ClientURL:           "http://127.0.0.1:2379",
		PeerURL:             "http://127.0.0.1:2380",
		HeartbeatInterval:   50 * time.Millisecond,
		ElectionTimeout:     500 * time.Millisecond,
		LogLevel:            "error",
		CompactionRetention: time.Hour,
	}
}

func (c EmbedConfig) withDefaults() EmbedConfig {
	d := DefaultEmbedConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.ClientURL == "" {
		c.ClientURL = d.ClientURL
	}
	if c.PeerURL == "" {
		c.PeerURL = d.PeerURL
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = d.LogLevel
	}
	if c.CompactionRetention == 0 {
		c.CompactionRetention = d.CompactionRetention
	}
	return c
}

// Validate reports the first invalid field by name.
func (c EmbedConfig) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("embedded etcd: name is empty")
	}
	if c.DataDir == "" {
		return fmt.Errorf("embedded etcd: data dir is empty: give a directory for etcd's data")
	}
	cu, err := parseListenURL(c.ClientURL)
	if err != nil {
		return fmt.Errorf("embedded etcd: client URL: %w", err)
	}
	pu, err := parseListenURL(c.PeerURL)
	if err != nil {
		return fmt.Errorf("embedded etcd: peer URL: %w", err)
	}
	if cu.Host == pu.Host {
		return fmt.Errorf("embedded etcd: client URL and peer URL both use %s: give them different ports", cu.Host)
	}
	if c.HeartbeatInterval < time.Millisecond {
		return fmt.Errorf("embedded etcd: heartbeat interval %s must be at least 1ms", c.HeartbeatInterval)
	}
	if c.ElectionTimeout < 5*c.HeartbeatInterval {
		return fmt.Errorf("embedded etcd: election timeout %s must be at least 5 heartbeat intervals (%s)", c.ElectionTimeout, 5*c.HeartbeatInterval)
	}
	if c.ElectionTimeout > 50*time.Second {
		return fmt.Errorf("embedded etcd: election timeout %s is longer than etcd's maximum of 50s", c.ElectionTimeout)
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("embedded etcd: log level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.CompactionRetention < time.Minute {
		return fmt.Errorf("embedded etcd: compaction retention %s must be at least 1m", c.CompactionRetention)
	}
	return nil
}

func parseListenURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		// TLS needs certificates we do not manage; an external etcd can use it.
		return nil, fmt.Errorf("%q: want http://host:port", s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%q: want http://host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	return u, nil
}

// Embedded is a running single-node etcd.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	log       *slog.Logger
	errDone   chan struct{} // closed when the error-logging goroutine ends
	closing   *atomic.Bool  // set by Close: etcd's shutdown noise is not an error
	closeOnce sync.Once
}

// StartEmbedded starts etcd and waits until it serves clients, or until ctx
// ends. A listen address already in use fails at once with an error naming it.
func StartEmbedded(ctx context.Context, cfg EmbedConfig, log *slog.Logger) (*Embedded, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With("component", "etcd")
	cu, _ := url.Parse(cfg.ClientURL)
	pu, _ := url.Parse(cfg.PeerURL)
	level, _ := zapcore.ParseLevel(cfg.LogLevel)

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.UnsafeNoFsync = cfg.NoFsync
	// Nothing of ours speaks etcd's HTTP/JSON gateway; fewer listeners, fewer goroutines.
	ec.EnableGRPCGateway = false
	ec.LogLevel = cfg.LogLevel
	closing := new(atomic.Bool)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log, level, closing))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, explainStartError(cfg, err)
	}
	em := &Embedded{etcd: e, log: log, errDone: make(chan struct{}), closing: closing}
	for _, l := range e.Clients {
		em.endpoints = append(em.endpoints, cu.Scheme+"://"+l.Addr().String())
	}
	go em.logErrors()

	select {
	case <-e.Server.ReadyNotify():
	case <-e.Server.StopNotify():
		em.Close()
		return nil, fmt.Errorf("embedded etcd %s: stopped before it was ready (see etcd's error log)", cfg.DataDir)
	case <-ctx.Done():
		em.Close()
		return nil, fmt.Errorf("embedded etcd %s: not ready: %w", cfg.DataDir, ctx.Err())
	}
	log.Info("etcd ready", "endpoints", em.endpoints, "data_dir", cfg.DataDir)
	return em, nil
}

// explainStartError turns "bind: address already in use" into an error that
// says which of our URLs is taken and what to do.
func explainStartError(cfg EmbedConfig, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("start embedded etcd %s: %w", cfg.DataDir, err)
	}
	addr := "a listen address"
	var op *net.OpError
	if errors.As(err, &op) && op.Addr != nil {
		addr = op.Addr.String()
	}
	what := "address " + addr
	if cu, _ := url.Parse(cfg.ClientURL); cu != nil && sameAddr(cu.Host, addr) {
		what = "client URL " + cfg.ClientURL
	} else if pu, _ := url.Parse(cfg.PeerURL); pu != nil && sameAddr(pu.Host, addr) {
		what = "peer URL " + cfg.PeerURL
	}
	return fmt.Errorf("start embedded etcd: %s: %s is already in use; is another etcd or `holdfast up` running? Stop it or choose another port (%w)",
		what, addr, err)
}

func sameAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if ap != bp {
		return false
	}
	if ah == bh {
		return true
	}
	ai, bi := net.ParseIP(ah), net.ParseIP(bh)
	return ai != nil && bi != nil && ai.Equal(bi)
}

// logErrors reports what etcd sends on its error channel; etcd closes the
// channel at the end of Close, which ends this goroutine.
func (e *Embedded) logErrors() {
	defer close(e.errDone)
	for err := range e.etcd.Err() {
		if err != nil && !e.closing.Load() {
			e.log.Error("etcd error", "err", err)
		}
	}
}

// Endpoints returns the client URLs etcd actually listens on.
func (e *Embedded) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Close stops etcd and waits until it has stopped. Clients still connected
// see their streams cut. It is safe to call more than once.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.etcd.Close()
		<-e.errDone
		e.log.Info("etcd stopped")
	})
}
