package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// poolKey identifies server connections that are interchangeable: same
// member, same login, same startup parameters.
type poolKey struct {
	member, addr   string
	user, database string
	params         string // canonical startup parameters
}

// paramKey names the greeting a client gets: the same for every member of
// one endpoint, so a client can be greeted while the writer is changing.
type paramKey struct {
	writer                 bool
	user, database, params string
}

// serverConn is one connection to a PostgreSQL member, owned by a pool and
// lent to one session at a time.
type serverConn struct {
	p      *pool
	conn   net.Conn
	rw     io.ReadWriter // conn for the relay (see fastIO)
	cancel *cancelTarget // where a client's CancelRequest for this connection goes
	pid    uint32
	secret []byte
	params map[string]string
	in     *msgReader
	out    *bufio.Writer

	// prepared are the named statements that exist on this server: name ->
	// Parse body after the name. unsure means there may be others (after
	// DEALLOCATE or DISCARD), so a Parse must close its name first.
	prepared map[string]string
	unsure   bool
	// expect lists the ParseComplete ('1') and CloseComplete ('3') replies
	// due, in order, so prepared stays exact and replies to messages the
	// proxy injected are not passed to the client. Guarded by the owning
	// session's mutex.
	expect []expectation

	idleSince time.Time
}

type expectation struct {
	reply    byte // '1' or '3'
	injected bool // sent by the proxy: not passed to the client
}

// pool holds the server connections of one poolKey.
type pool struct {
	s      *Server
	key    poolKey
	target Target
	writer bool
	size   int
	dialFn func(context.Context) (*serverConn, error)

	mu      sync.Mutex
	idle    []*serverConn         // guarded by mu
	open    int                   // guarded by mu: idle + lent + being dialled
	waiters []chan *serverConn    // guarded by mu: FIFO
	retired bool                  // guarded by mu
	lent    map[*serverConn]int64 // guarded by mu
}

var errPoolRetired = errors.New("pool retired: its member is no longer a target")

// acquire lends a server connection: an idle one, a new one while under
// size, or the next one released (first come, first served).
// tryIdle lends an idle connection if there is one, without waiting or
// dialling.
func (p *pool) tryIdle() *serverConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired {
		return nil
	}
	return p.popIdleLocked()
}

// popIdleLocked lends the most recently used idle connection that is still
// alive, closing dead ones; nil if none is left.
func (p *pool) popIdleLocked() *serverConn {
	for len(p.idle) > 0 {
		sc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if sc.alive() {
			p.lent[sc] = 0
			return sc
		}
		p.open--
		_ = sc.conn.Close()
	}
	return nil
}

func (p *pool) acquire(ctx context.Context) (*serverConn, error) {
	for {
		p.mu.Lock()
		if p.retired {
			p.mu.Unlock()
			return nil, errPoolRetired
		}
		if sc := p.popIdleLocked(); sc != nil {
			p.mu.Unlock()
			return sc, nil
		}
		if p.open < p.size {
			p.open++
			p.mu.Unlock()
			sc, err := p.dialFn(ctx)
			p.mu.Lock()
			if err != nil {
				p.open--
				p.wakeLocked(nil)
				p.mu.Unlock()
				return nil, err
			}
			if p.retired {
				p.open--
				p.mu.Unlock()
				_ = sc.conn.Close()
				return nil, errPoolRetired
			}
			p.lent[sc] = 0
			p.mu.Unlock()
			return sc, nil
		}
		ch := make(chan *serverConn, 1)
		p.waiters = append(p.waiters, ch)
		p.mu.Unlock()
		select {
		case sc := <-ch:
			if sc != nil {
				return sc, nil
			}
			// A slot freed up: go round and dial.
		case <-ctx.Done():
			p.mu.Lock()
			for i, w := range p.waiters {
				if w == ch {
					p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
					break
				}
			}
			p.mu.Unlock()
			// A connection may have been handed over meanwhile.
			select {
			case sc := <-ch:
				if sc != nil {
					p.release(sc, true)
				}
			default:
			}
			return nil, ctx.Err()
		}
	}
}

// wakeLocked hands sc (or, if nil, a free slot) to the first waiter. It
// reports whether there was one.
func (p *pool) wakeLocked(sc *serverConn) bool {
	if len(p.waiters) == 0 {
		return false
	}
	w := p.waiters[0]
	p.waiters = p.waiters[1:]
	if sc != nil {
		p.lent[sc] = 0
	}
	w <- sc
	return true
}

// release takes a server connection back. reusable says it is idle, at a
// message boundary, outside a transaction, with no session state the next
// client could see.
func (p *pool) release(sc *serverConn, reusable bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.lent, sc)
	if !reusable || p.retired {
		p.open--
		_ = sc.conn.Close()
		p.wakeLocked(nil)
		return
	}
	sc.expect = sc.expect[:0]
	if p.wakeLocked(sc) {
		return
	}
	sc.idleSince = time.Now()
	p.idle = append(p.idle, sc)
}

// retire closes the idle connections and refuses new loans; lent ones are
// closed when they come back, or now if cut is set (a new writer is known:
// sessions still on the old one must not wait on it, it may never answer).
func (p *pool) retire(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retired = true
	if cut {
		for sc := range p.lent {
			_ = sc.conn.Close()
		}
	}
	for _, sc := range p.idle {
		_ = sc.conn.Close()
		p.open--
	}
	p.idle = nil
	for len(p.waiters) > 0 {
		p.wakeLocked(nil) // they see retired and pick another target
	}
}

// reap closes connections idle longer than d.
func (p *pool) reap(now time.Time, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.idle[:0]
	for _, sc := range p.idle {
		if now.Sub(sc.idleSince) > d {
			_ = sc.conn.Close()
			p.open--
			continue
		}
		keep = append(keep, sc)
	}
	clear(p.idle[len(keep):])
	p.idle = keep
}

// PoolStats describes one pool.
type PoolStats struct {
	Endpoint string `json:"endpoint"`
	Member   string `json:"member"`
	Addr     string `json:"addr"`
	User     string `json:"user"`
	Database string `json:"database"`
	Open     int    `json:"open"`
	Idle     int    `json:"idle"`
	Active   int    `json:"active"`
	Waiting  int    `json:"waiting"`
	Size     int    `json:"size"`
	Retired  bool   `json:"retired,omitempty"`
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	ep := "reader"
	if p.writer {
		ep = "writer"
	}
	return PoolStats{Endpoint: ep, Member: p.key.member, Addr: p.key.addr, User: p.key.user, Database: p.key.database,
		Open: p.open, Idle: len(p.idle), Active: len(p.lent), Waiting: len(p.waiters), Size: p.size, Retired: p.retired}
}

// recentlyIdle: a connection released this recently is lent without a
// look (in transaction mode one is released and lent again for every
// transaction).
const recentlyIdle = 20 * time.Millisecond

// alive checks, without blocking, that the server has not closed an idle
// connection or sent something unasked (a FATAL before shutting down).
func (sc *serverConn) alive() bool {
	if sc.in.buffered() > 0 {
		return false
	}
	if time.Since(sc.idleSince) < recentlyIdle {
		return true // it was fine a moment ago: spare the system call
	}
	if raw, ok := sc.rw.(*sockIO); ok {
		return raw.quiet()
	}
	return true // TLS: cannot look without consuming; a dead one fails on first use
}

// canonicalParams renders startup parameters in a stable order.
func canonicalParams(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(m[k]))
		b.WriteByte(' ')
	}
	return b.String()
}

// poolFor returns the pool of target for this session's login.
func (ss *session) poolFor(t Target) *pool {
	s := ss.s
	key := poolKey{member: t.Name, addr: t.Addr, user: ss.user, database: ss.database, params: ss.paramsKey}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pools[key]; p != nil && !p.isRetired() {
		return p
	}
	u := ss.u
	user, database, params := ss.user, ss.database, ss.params
	p := &pool{s: s, key: key, target: t, writer: ss.ep.writer, size: s.cfg.PoolSize, lent: map[*serverConn]int64{}}
	p.dialFn = func(ctx context.Context) (*serverConn, error) {
		return s.dialServer(ctx, p, t, user, database, u.ServerPassword, params)
	}
	s.pools[key] = p
	return p
}

func (p *pool) isRetired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retired
}

// dialServer opens a server connection with the proxy's credentials.
func (s *Server) dialServer(ctx context.Context, p *pool, t Target, user, database, password string, params map[string]string) (*serverConn, error) {
	host, portS, _ := net.SplitHostPort(t.Addr)
	port, _ := strconv.Atoi(portS)
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = host, uint16(port), user, password, database
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	cfg.ConnectTimeout = s.cfg.ConnectTimeout
	cfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may have a background read in flight (it starts one when a
	// write is slow): it would swallow the server's next reply after the
	// hijack. Wait for it to finish, with nothing left buffered.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	if tc, ok := hc.Conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	rw := fastIO(hc.Conn)
	return &serverConn{p: p, conn: hc.Conn, rw: rw, pid: hc.PID, secret: hc.SecretKey, params: hc.ParameterStatuses,
		in: newServerReader(rw, maxServerMessage), out: bufio.NewWriterSize(rw, 16<<10),
		prepared: map[string]string{},
		cancel:   &cancelTarget{addr: t.Addr, pid: hc.PID, secret: hc.SecretKey}}, nil
}

// janitor retires pools whose member is no longer a target of their
// endpoint and closes server connections idle too long.
func (s *Server) janitor() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		_, _, changed := s.router.Writer()
		select {
		case <-s.ctx.Done():
			s.mu.Lock()
			pools := s.pools
			s.pools = map[poolKey]*pool{}
			s.mu.Unlock()
			for _, p := range pools {
				p.retire(false)
			}
			return
		case <-changed:
		case <-tick.C:
		}
		w, haveWriter, _ := s.router.Writer()
		readers := map[string]bool{}
		for _, r := range s.router.Readers() {
			readers[r.Name+"@"+r.Addr] = true
		}
		now := time.Now()
		s.mu.Lock()
		for k, p := range s.pools {
			current := readers[k.member+"@"+k.addr] || (s.cfg.ReaderFallbackToPrimary && haveWriter && w.Name == k.member && w.Addr == k.addr)
			if p.writer {
				current = haveWriter && w.Name == k.member && w.Addr == k.addr
			}
			if !current {
				p.retire(p.writer && haveWriter)
				if st := p.stats(); st.Open == 0 {
					delete(s.pools, k)
				}
				continue
			}
			if s.cfg.ServerIdleTimeout > 0 {
				p.reap(now, s.cfg.ServerIdleTimeout)
			}
		}
		s.mu.Unlock()
	}
}

// Pools returns every pool's counts.
func (s *Server) Pools() []PoolStats {
	s.mu.Lock()
	pools := make([]*pool, 0, len(s.pools))
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	s.mu.Unlock()
	out := make([]PoolStats, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.stats())
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Endpoint != b.Endpoint {
			return a.Endpoint > b.Endpoint
		}
		if a.Member != b.Member {
			return a.Member < b.Member
		}
		return a.User+"/"+a.Database < b.User+"/"+b.Database
	})
	return out
}
