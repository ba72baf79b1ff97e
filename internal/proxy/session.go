package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
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
	be  *pgproto3.Backend
	key cancelKey

	user, database string
	params         map[string]string // startup parameters to pass on
	u              User
}

func newSession(s *Server, ep *endpoint, c net.Conn) *session {
	return &session{s: s, ep: ep, c: c, be: pgproto3.NewBackend(c, c)}
}

// fatal sends an ErrorResponse and ends the session.
func (ss *session) fatal(code, format string, args ...any) {
	_ = ss.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = ss.c.Write(errorResponse("FATAL", code, fmt.Sprintf(format, args...)))
}

func (ss *session) run() {
	n := ss.ep.clients.Add(1)
	defer ss.ep.clients.Add(-1)
	_ = ss.c.SetDeadline(time.Now().Add(ss.s.cfg.StartupTimeout))
	ss.be.SetMaxBodyLen(ss.s.cfg.MaxMessageSize)
	if !ss.startup() {
		return
	}
	if n > int64(ss.s.cfg.MaxClients) {
		ss.fatal("53300", "too many client connections on the %s endpoint (max_clients %d)", ss.ep.name, ss.s.cfg.MaxClients)
		return
	}
	u, ok := ss.authenticate()
	if !ok {
		return
	}
	_ = ss.c.SetDeadline(time.Time{})
	ss.u = u
	server, target, err := ss.connect(u)
	if err != nil {
		return
	}
	ss.key = ss.s.registerCancel(cancelTarget{addr: target.Addr, pid: server.PID, secret: server.SecretKey})
	defer ss.s.dropCancel(ss.key)
	ss.greet(server)
	ss.relay(server, target)
}

// startup reads the startup packet, answering SSL and GSS encryption
// requests and serving cancel requests. It returns false when the session
// is over.
func (ss *session) startup() bool {
	for {
		msg, err := ss.be.ReceiveStartupMessage()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				ss.fatal("08P01", "invalid startup packet: %v", err)
			}
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if !ss.startTLS() {
				return false
			}
		case *pgproto3.GSSEncRequest:
			if _, err := ss.c.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
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
	if !ok {
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
		return User{}, false
	}
	if err := ss.be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return User{}, false
	}
	msg, err := ss.be.Receive()
	if err != nil {
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
		return User{}, false
	}
	if err := ss.be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return User{}, false
	}
	msg, err = ss.be.Receive()
	if err != nil {
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

// pick chooses the server for this session: the writer (waiting for one
// within the hold window), or the least-loaded qualifying replica.
func (ss *session) pick(ctx context.Context) (Target, error) {
	if !ss.ep.writer {
		if t, ok := ss.s.pickReader(); ok {
			return t, nil
		}
		if !ss.s.cfg.ReaderFallbackToPrimary {
			return Target{}, errors.New("no replica qualifies for reads and reader_fallback_to_primary is off")
		}
	}
	if t, ok, _ := ss.s.router.Writer(); ok {
		return t, nil
	}
	if n := ss.s.waiting.Add(1); n > int64(ss.s.cfg.MaxWaiting) {
		ss.s.waiting.Add(-1)
		return Target{}, fmt.Errorf("no primary, and %d clients already wait for one (max_waiting)", n-1)
	}
	defer ss.s.waiting.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, ss.s.cfg.HoldWindow)
	defer cancel()
	t, err := ss.s.router.WaitWriter(wctx)
	if err != nil {
		return Target{}, fmt.Errorf("no primary became available within %s (hold_window): the cluster is failing over or has no eligible member", ss.s.cfg.HoldWindow)
	}
	return t, nil
}

// connect opens the server connection with the proxy's credentials. It
// retries within the hold window while the target changes or refuses.
func (ss *session) connect(u User) (*pgconn.HijackedConn, Target, error) {
	deadline := time.Now().Add(ss.s.cfg.HoldWindow)
	var lastErr error
	for time.Now().Before(deadline) && ss.s.ctx.Err() == nil {
		t, err := ss.pick(ss.s.ctx)
		if err != nil {
			ss.fatal("57P03", "holdfast proxy: %v", err)
			return nil, Target{}, err
		}
		hc, err := ss.dial(t, u)
		if err == nil {
			return hc, t, nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000" || pgErr.Code == "3D000") {
			// The server refused the login itself: pass that on.
			ss.fatal(pgErr.Code, "%s", pgErr.Message)
			return nil, Target{}, err
		}
		lastErr = err
		ss.s.log.Debug("server connection failed; retrying", "target", t.Name, "err", err)
		select {
		case <-ss.s.ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	ss.fatal("57P03", "holdfast proxy: cannot reach a server: %v", lastErr)
	return nil, Target{}, lastErr
}

func (ss *session) dial(t Target, u User) (*pgconn.HijackedConn, error) {
	host, portS, _ := net.SplitHostPort(t.Addr)
	port, _ := strconv.Atoi(portS)
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = host, uint16(port), ss.user, u.ServerPassword, ss.database
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	cfg.ConnectTimeout = ss.s.cfg.ConnectTimeout
	cfg.RuntimeParams = map[string]string{}
	for k, v := range ss.params {
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, ss.s.cfg.ConnectTimeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	return hc, nil
}

// greet finishes the client's startup with the server's parameters, our
// cancel key and ReadyForQuery.
func (ss *session) greet(hc *pgconn.HijackedConn) {
	for k, v := range hc.ParameterStatuses {
		ss.be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	secret := make([]byte, 4)
	binary.BigEndian.PutUint32(secret, ss.key.secret)
	ss.be.Send(&pgproto3.BackendKeyData{ProcessID: ss.key.pid, SecretKey: secret})
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	_ = ss.be.Flush()
}
