package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/store"

	"github.com/holdfast/holdfast/internal/proxy/scram"
)

// User is a login the proxy accepts: the SCRAM verifier clients are checked
// against, and the password the proxy uses towards PostgreSQL.
type User struct {
	Verifier       scram.Verifier
	ServerPassword string
}

// Users looks up logins by name.
type Users interface {
	Lookup(name string) (User, bool)
}

// StaticUsers is a fixed set of logins.
type StaticUsers map[string]User

// Lookup implements Users.
func (s StaticUsers) Lookup(name string) (User, bool) {
	u, ok := s[name]
	return u, ok
}

// endpoint is one listener: the writer or the reader.
type endpoint struct {
	name    string
	writer  bool
	ln      net.Listener
	clients atomic.Int64
	parked  atomic.Int64     // clients whose relay is parked (see session.run)
	m       *endpointMetrics // pre-resolved label children, set by Open
	// ended counts connections that ended, by cause (see endCause).
	ended [causeCount]atomic.Int64
}

// cancelKey is what the proxy hands a client in BackendKeyData.
type cancelKey struct {
	pid    uint32
	secret uint32
}

// cancelTarget is where a client's CancelRequest must go.
type cancelTarget struct {
	addr   string
	pid    uint32
	secret []byte
}

// Server is the proxy. Open binds, Close stops and waits.
type Server struct {
	cfg    Config
	router *Router
	users  Users
	log    *slog.Logger

	endpoints []*endpoint
	waiting   atomic.Int64
	servers   atomic.Int64
	// goroutines counts the goroutines serving clients: one per session
	// (logging in, relaying or parked), one per server connection lent
	// (its reader), one per lost COMMIT being looked up. With no client it
	// is 0; a leak shows as more than clients + servers.
	goroutines atomic.Int64
	// closing is set when Close begins: sessions that end from then on
	// end because of it.
	closing atomic.Bool
	// metrics, the admin server (/metrics, /status) and the start time are
	// set by Open.
	metrics *metrics
	admin   *adminServer
	started time.Time
	// mockSecret salts the fake SCRAM exchange run for unknown users.
	mockSecret []byte

	mu      sync.Mutex
	cancels map[cancelKey]*session         // guarded by mu
	pools   map[poolKey]*pool              // guarded by mu
	greets  map[paramKey]map[string]string // guarded by mu: ParameterStatus to greet clients with
	// sessions are the writer endpoint's sessions (for switchover drains).
	sessions map[*session]struct{} // guarded by mu
	// report is what the proxy publishes in etcd; reportNow asks for it
	// to be published at once.
	report    store.ProxyReport // guarded by mu
	reportNow chan struct{}
	// hold is set while a planned switchover holds new work.
	hold  atomic.Pointer[hold]
	conns map[net.Conn]struct{} // guarded by mu: open client connections
	// readerLoad counts sessions per replica for least-connections routing.
	readerLoad map[string]int // guarded by mu
	closed     bool           // guarded by mu

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New creates a proxy; it opens nothing.
func New(cfg Config, router *Router, users Users, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, router: router, users: users, log: log.With("component", "proxy"),
		cancels: map[cancelKey]*session{}, pools: map[poolKey]*pool{}, greets: map[paramKey]map[string]string{}, sessions: map[*session]struct{}{}, reportNow: make(chan struct{}, 1), conns: map[net.Conn]struct{}{}, readerLoad: map[string]int{},
		mockSecret: randomBytes(32)}, nil
}

// Open binds the listeners (so "address in use" fails at once) and starts
// serving.
func (s *Server) Open() error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics, s.started = newMetrics(s), time.Now()
	for _, e := range []struct {
		name, addr string
		writer     bool
	}{{"writer", s.cfg.WriterAddr, true}, {"reader", s.cfg.ReaderAddr, false}} {
		if e.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", e.addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("proxy %s endpoint: %w", e.name, err)
		}
		s.endpoints = append(s.endpoints, &endpoint{name: e.name, writer: e.writer, ln: ln, m: s.metrics.forEndpoint(e.name)})
	}
	if err := s.openAdmin(); err != nil {
		s.closeListeners()
		return err
	}
	for _, ep := range s.endpoints {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.acceptLoop(ep) }()
	}
	s.report = store.ProxyReport{ID: s.proxyID(), Region: s.cfg.Region, Addr: s.Addr("writer"), StartedAt: time.Now()}
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.janitor() }()
	go func() { defer s.wg.Done(); s.holdLoop() }()
	go func() { defer s.wg.Done(); s.reportLoop() }()
	return nil
}

// Addr returns the bound address of the writer ("writer") or reader endpoint.
func (s *Server) Addr(name string) string {
	for _, e := range s.endpoints {
		if e.name == name {
			return e.ln.Addr().String()
		}
	}
	return ""
}

func (s *Server) closeListeners() {
	for _, e := range s.endpoints {
		_ = e.ln.Close()
	}
}

// Close stops accepting, closes every client connection and waits.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.closeListeners()
	s.closeAdmin()
	s.wg.Wait()
	return nil
}

func (s *Server) acceptLoop(ep *endpoint) {
	var delay time.Duration
	for {
		c, err := ep.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept", "endpoint", ep.name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.metrics.accept(ep)
		if !s.track(c) {
			ep.ended[causeShutdown].Add(1)
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		s.goroutines.Add(1)
		go func() {
			defer s.goroutines.Add(-1)
			ss := newSession(s, ep, c)
			if !ss.open() {
				ss.endLogin()
				return
			}
			// Relay on a fresh goroutine: its stack starts small again
			// after the authentication's deep calls, which matters with
			// thousands of idle clients. The session ends in serve
			// (ss.finish), on whichever goroutine it then runs.
			s.goroutines.Add(1)
			go ss.serve()
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}

// registerCancel issues the key a client will use to cancel its queries.
func (s *Server) registerCancel(ss *session) cancelKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		k := cancelKey{pid: binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, secret: binary.BigEndian.Uint32(b[4:])}
		if _, taken := s.cancels[k]; !taken && k.pid != 0 {
			s.cancels[k] = ss
			return k
		}
	}
}

func (s *Server) dropCancel(k cancelKey) {
	s.mu.Lock()
	delete(s.cancels, k)
	s.mu.Unlock()
}

// lookupCancel returns the server connection a client's key points at now,
// if it holds one.
func (s *Server) lookupCancel(k cancelKey) (cancelTarget, bool) {
	s.mu.Lock()
	ss := s.cancels[k]
	s.mu.Unlock()
	if ss == nil {
		return cancelTarget{}, false
	}
	t := ss.cancelTo.Load()
	if t == nil {
		return cancelTarget{}, false
	}
	return *t, true
}

func (s *Server) addReaderLoad(name string, d int) {
	s.mu.Lock()
	s.readerLoad[name] += d
	s.mu.Unlock()
}

// Stats is a snapshot of the proxy's load.
type Stats struct {
	Clients map[string]int64 `json:"clients"` // per endpoint
	Parked  map[string]int64 `json:"parked"`  // per endpoint: idle clients held by a small waiter
	Servers int64            `json:"servers"` // server connections lent to clients
	Waiting int64            `json:"waiting"` // clients waiting for a writer
	Pools   []PoolStats      `json:"pools"`
	// Goroutines serving clients: one per client connection, one per
	// server connection lent, one per lost COMMIT being looked up.
	Goroutines int64 `json:"goroutines"`
	// Ended counts client connections that ended, per endpoint and cause
	// (causes never seen are left out).
	Ended map[string]map[string]int64 `json:"ended"`
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	st := Stats{Clients: map[string]int64{}, Parked: map[string]int64{}, Servers: s.servers.Load(), Waiting: s.waiting.Load(), Pools: s.Pools(),
		Goroutines: s.goroutines.Load(), Ended: map[string]map[string]int64{}}
	for _, e := range s.endpoints {
		st.Clients[e.name] = e.clients.Load()
		st.Parked[e.name] = e.parked.Load()
		st.Ended[e.name] = e.endedCounts()
	}
	return st
}
