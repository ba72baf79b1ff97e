package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/holdfast/holdfast/internal/proxy/scram"
)

// session is one client connection.
type session struct {
	s   *Server
	ep  *endpoint
	c   net.Conn
	cio io.ReadWriter // c for the relay (see fastIO)
	// conn is the accepted connection (c is a TLS layer over it once the
	// client asked for TLS): the server tracks it to close it at shutdown.
	conn net.Conn
	be   *pgproto3.Backend
	key  cancelKey

	user, database string
	params         map[string]string // startup parameters to pass on
	paramsKey      string            // params, canonical (part of the pool key)
	u              User
	// st is the relay's state once relaying (for switchover drains).
	st *relayState
	// pool is the writer pool acquireIdle used last.
	pool *pool
	// cancelTo is where the client's CancelRequest goes: the server
	// connection it holds now, if any.
	cancelTo atomic.Pointer[cancelTarget]
	// cause is why the session ends (an endCause; see setCause), and
	// finished is set once finish has run.
	cause    atomic.Uint32
	finished atomic.Bool
}

func newSession(s *Server, ep *endpoint, c net.Conn) *session {
	return &session{s: s, ep: ep, c: c, conn: c, be: pgproto3.NewBackend(c, c)}
}

// fatal sends an ErrorResponse and ends the session. Before the client is
// logged in, that is a failed login; afterwards the caller records why.
func (ss *session) fatal(code, format string, args ...any) {
	if ss.key.pid == 0 {
		ss.setCause(causeLoginFailed)
	}
	ss.s.metrics.fatal(ss, code)
	_ = ss.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = ss.c.Write(errorResponse("FATAL", code, fmt.Sprintf(format, args...)))
}

// open runs the startup and authentication and greets the client. It
// returns false when the session is over.
func (ss *session) open() bool {
	n := ss.ep.clients.Add(1)
	ok := false
	defer func() {
		if !ok {
			ss.ep.clients.Add(-1)
		}
	}()
	_ = ss.c.SetDeadline(time.Now().Add(ss.s.cfg.StartupTimeout))
	ss.be.SetMaxBodyLen(ss.s.cfg.MaxMessageSize)
	if !ss.startup() {
		return false
	}
	if n > int64(ss.s.cfg.MaxClients) {
		ss.fatal("53300", "too many client connections on the %s endpoint (max_clients %d)", ss.ep.name, ss.s.cfg.MaxClients)
		return false
	}
	u, authOK := ss.authenticate()
	if !authOK {
		return false
	}
	_ = ss.c.SetDeadline(time.Time{})
	ss.u = u
	ss.paramsKey = canonicalParams(ss.params)
	params, err := ss.greeting()
	if err != nil {
		ss.fatalErr(err)
		return false
	}
	ss.key = ss.s.registerCancel(ss)
	ss.greet(params)
	ss.be = nil // its buffers are not needed any more
	ok = true
	return true
}

// serve relays until the client leaves (or parks it: see run).
func (ss *session) serve() {
	defer ss.s.goroutines.Add(-1)
	ss.relay()
}

// finish releases what the session held in the server once it is over and
// counts how it ended. It runs once per logged-in session: a second call
// would be a bug, and is refused rather than counted twice.
func (ss *session) finish() {
	if !ss.finished.CompareAndSwap(false, true) {
		ss.s.log.Error("BUG: session finished twice", "endpoint", ss.ep.name, "cause", endCause(ss.cause.Load()).String())
		return
	}
	ss.s.dropCancel(ss.key)
	ss.ep.clients.Add(-1)
	ss.countEnd()
	ss.s.untrack(ss.conn)
	ss.s.wg.Done()
}

// startup reads the startup packet, answering SSL and GSS encryption
// requests and serving cancel requests. It returns false when the session
// is over.
func (ss *session) startup() bool {
	for {
		msg, err := ss.be.ReceiveStartupMessage()
		if err != nil {
			if c := ss.readCause(err); c == causeClientEOF || c == causeClientReset {
				ss.setCause(c)
				return false
			}
			ss.fatal("08P01", "invalid startup packet: %v", err)
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if !ss.startTLS() {
				return false
			}
		case *pgproto3.GSSEncRequest:
			if _, err := ss.c.Write([]byte{'N'}); err != nil {
				ss.setCause(ss.readCause(err))
				return false
			}
		case *pgproto3.CancelRequest:
			ss.setCause(causeCancel)
			ss.forwardCancel(cancelKey{pid: m.ProcessID, secret: secretUint32(m.SecretKey)})
			return false
		case *pgproto3.StartupMessage:
			if ss.plaintextRefused() {
				return false
			}
			if m.ProtocolVersion != pgproto3.ProtocolVersion30 {
				ss.fatal("0A000", "unsupported frontend protocol %d.%d: the proxy supports 3.0", m.ProtocolVersion>>16, m.ProtocolVersion&0xffff)
				return false
			}
			ss.user = m.Parameters["user"]
			if ss.user == "" {
				ss.fatal("28000", "no PostgreSQL user name specified in startup packet")
				return false
			}
			ss.database = m.Parameters["database"]
			if ss.database == "" {
				ss.database = ss.user
			}
			ss.params = map[string]string{}
			for k, v := range m.Parameters {
				if k != "user" && k != "database" {
					ss.params[k] = v
				}
			}
			return true
		default:
			ss.fatal("08P01", "unexpected startup message %T", msg)
			return false
		}
	}
}

func secretUint32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// forwardCancel sends a client's CancelRequest to the server connection its
// key maps to. Unknown keys are ignored, as PostgreSQL does.
func (ss *session) forwardCancel(k cancelKey) {
	t, ok := ss.s.lookupCancel(k)
	if !ok || t.addr == "" {
		return
	}
	c, err := net.DialTimeout("tcp", t.addr, ss.s.cfg.ConnectTimeout)
	if err != nil {
		ss.s.log.Warn("forward cancel", "addr", t.addr, "err", err)
		return
	}
	defer c.Close()
	buf, err := (&pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.secret}).Encode(nil)
	if err == nil {
		_, _ = c.Write(buf)
	}
	// PostgreSQL closes the connection once it has read the request.
	_ = c.SetReadDeadline(time.Now().Add(ss.s.cfg.ConnectTimeout))
	_, _ = c.Read(make([]byte, 1))
}

// authenticate runs SCRAM-SHA-256 against the stored verifier.
func (ss *session) authenticate() (User, bool) {
	u, known := ss.s.users.Lookup(ss.user)
	// An unknown user gets PostgreSQL's mock exchange: a stable fake salt,
	// always failing, so it is indistinguishable from a wrong password.
	srv := scram.NewMockServer(ss.user, ss.s.mockSecret, scram.DefaultIterations)
	if known {
		srv = scram.NewServer(u.Verifier, ss.user)
	}
	ss.be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: srv.Mechanisms()})
	if err := ss.be.Flush(); err != nil {
		ss.setCause(ss.readCause(err))
		return User{}, false
	}
	if err := ss.be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return User{}, false
	}
	msg, err := ss.be.Receive()
	if err != nil {
		ss.setCause(ss.readCause(err))
		return User{}, false
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		ss.fatal("08P01", "expected SASL initial response, got %T", msg)
		return User{}, false
	}
	first, err := srv.First(init.AuthMechanism, init.Data)
	if err != nil {
		ss.authFailed(err)
		return User{}, false
	}
	ss.be.Send(&pgproto3.AuthenticationSASLContinue{Data: first})
	if err := ss.be.Flush(); err != nil {
		ss.setCause(ss.readCause(err))
		return User{}, false
	}
	if err := ss.be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return User{}, false
	}
	msg, err = ss.be.Receive()
	if err != nil {
		ss.setCause(ss.readCause(err))
		return User{}, false
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		ss.fatal("08P01", "expected SASL response, got %T", msg)
		return User{}, false
	}
	final, err := srv.Final(resp.Data)
	if err != nil || !known {
		ss.authFailed(err)
		return User{}, false
	}
	ss.be.Send(&pgproto3.AuthenticationSASLFinal{Data: final})
	ss.be.Send(&pgproto3.AuthenticationOk{})
	if err := ss.be.Flush(); err != nil {
		ss.setCause(ss.readCause(err))
		return User{}, false
	}
	return u, true
}

func (ss *session) authFailed(err error) {
	if errors.Is(err, scram.ErrProtocol) {
		ss.fatal("08P01", "SCRAM exchange: %v", err)
		return
	}
	ss.fatal("28P01", "password authentication failed for user %q", ss.user)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return b
}

// clientError is what the client is told when the session cannot get a
// server connection.
type clientError struct {
	code, msg string
}

func (e *clientError) Error() string { return e.code + ": " + e.msg }

func (ss *session) fatalErr(err error) {
	var ce *clientError
	if errors.As(err, &ce) {
		ss.fatal(ce.code, "%s", ce.msg)
		return
	}
	ss.fatal("57P03", "holdfast proxy: %v", err)
}

// pick chooses the server for this session: the writer (waiting for one
// until ctx ends: the hold window), or the least-loaded qualifying replica.
func (ss *session) pick(ctx context.Context) (Target, error) {
	if !ss.ep.writer {
		if t, ok := ss.s.pickReader(); ok {
			return t, nil
		}
		if !ss.s.cfg.ReaderFallbackToPrimary {
			return Target{}, &clientError{"57P03", "holdfast proxy: no replica qualifies for reads and reader_fallback_to_primary is off"}
		}
	}
	if t, ok, _ := ss.s.router.Writer(); ok {
		return t, nil
	}
	if n := ss.s.waiting.Add(1); n > int64(ss.s.cfg.MaxWaiting) {
		ss.s.waiting.Add(-1)
		ss.s.metrics.heldRejected(ss.ep)
		return Target{}, &clientError{"53300", fmt.Sprintf("holdfast proxy: no primary, and %d clients already wait for one (max_waiting)", n-1)}
	}
	defer ss.s.waiting.Add(-1)
	start := time.Now()
	t, err := ss.s.router.WaitWriter(ctx)
	ss.s.metrics.heldDone(ss.ep, start, err)
	if err != nil {
		return Target{}, &clientError{"57P03", fmt.Sprintf("holdfast proxy: no primary became available within %s (hold_window): the cluster is failing over or has no eligible member", ss.s.cfg.HoldWindow)}
	}
	return t, nil
}

// acquireIdle is acquire's fast path, taken for every transaction in
// transaction mode: an idle connection of the writer's pool, lent without
// waiting. nil when acquire must run (no writer known, a reader endpoint,
// nothing idle).
func (ss *session) acquireIdle() *serverConn {
	if !ss.ep.writer {
		return nil
	}
	w := ss.s.router.writerNow.Load()
	if w == nil {
		return nil
	}
	p := ss.pool
	if p == nil || p.target != *w {
		p = ss.poolFor(*w)
		ss.pool = p
	}
	return p.tryIdle()
}

// acquire lends the session a server connection of its endpoint, waiting
// within the hold window for a writer, for a free pool slot, and while the
// target refuses connections (it may be shutting down or starting). The
// error is a *clientError to pass on.
func (ss *session) acquire() (*serverConn, error) {
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.cfg.HoldWindow)
	defer cancel()
	var lastErr error
	for {
		t, err := ss.pick(ctx)
		if err != nil {
			if lastErr != nil {
				return nil, &clientError{"57P03", "holdfast proxy: cannot reach a server: " + lastErr.Error()}
			}
			return nil, err
		}
		sc, err := ss.s.metrics.acquire(ctx, ss.ep, ss.poolFor(t))
		if err == nil {
			return sc, nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000" || pgErr.Code == "3D000" || pgErr.Code == "42704") {
			// The server refused the login itself: pass that on.
			return nil, &clientError{pgErr.Code, pgErr.Message}
		}
		if ctx.Err() != nil {
			if lastErr == nil {
				lastErr = err
			}
			if errors.Is(lastErr, context.DeadlineExceeded) {
				return nil, &clientError{"57P03", fmt.Sprintf("holdfast proxy: no server connection became free within %s (hold_window; pool_size %d)", ss.s.cfg.HoldWindow, ss.s.cfg.PoolSize)}
			}
			return nil, &clientError{"57P03", "holdfast proxy: cannot reach a server: " + lastErr.Error()}
		}
		if !errors.Is(err, errPoolRetired) {
			lastErr = err
			ss.s.log.Debug("server connection failed; retrying", "target", t.Name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// greeting returns the parameters to greet the client with: those of the
// endpoint's servers for this login, cached, or learnt from a connection
// (which also checks that the login and database work).
func (ss *session) greeting() (map[string]string, error) {
	k := paramKey{writer: ss.ep.writer, user: ss.user, database: ss.database, params: ss.paramsKey}
	ss.s.mu.Lock()
	p, ok := ss.s.greets[k]
	ss.s.mu.Unlock()
	if ok {
		return p, nil
	}
	sc, err := ss.acquire()
	if err != nil {
		return nil, err
	}
	p = sc.params
	sc.p.release(sc, true)
	ss.s.mu.Lock()
	ss.s.greets[k] = p
	ss.s.mu.Unlock()
	return p, nil
}

// greet finishes the client's startup with the servers' parameters, our
// cancel key and ReadyForQuery.
func (ss *session) greet(params map[string]string) {
	for k, v := range params {
		ss.be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	secret := make([]byte, 4)
	binary.BigEndian.PutUint32(secret, ss.key.secret)
	ss.be.Send(&pgproto3.BackendKeyData{ProcessID: ss.key.pid, SecretKey: secret})
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	_ = ss.be.Flush()
}
