package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// How client connections end. Every accepted connection ends exactly once
// (session.finish, or session.endLogin for one that never logged in), with
// one cause, counted in holdfast_proxy_client_connections_ended_total, so
// that client_connections_total minus the ended ones is the connections
// open now (client_connections). The set is small and only ever grows.
type endCause uint32

const (
	causeUnset endCause = iota // not decided yet; counted as causeOther
	// The client left.
	causeTerminate   // it sent Terminate
	causeClientEOF   // it closed its connection (or shut down its sending side) without Terminate
	causeClientReset // its connection failed: reset, broken pipe, keepalive timeout
	// The proxy ended it.
	causeIdleTimeout // client_idle_timeout (FATAL 57P05)
	causeServerLost  // its server was lost and the session could not go on (FATAL 08006: session state; a lost COMMIT that could not be looked up)
	causeUnavailable // no server connection for it within the hold window (FATAL 57P03, 53300, or the server refused the login)
	causeLoginFailed // refused during startup or authentication with a FATAL (see client_logins_failed_total)
	causeCancel      // the connection carried a CancelRequest, not a session
	causeProtocol    // the client broke the protocol or sent a message over max_message_size (08P01)
	causeShutdown    // the proxy was closing
	causeOther
	causeCount
)

func (c endCause) String() string {
	return [...]string{"unset", "terminate", "client_eof", "client_reset", "idle_timeout", "server_lost",
		"unavailable", "login_failed", "cancel_request", "protocol", "shutdown", "other"}[c]
}

// setCause records why the session ends; the first cause recorded wins
// (whoever closes the client's connection records why before the relay
// notices). Once the proxy is closing, every end is a shutdown.
func (ss *session) setCause(c endCause) {
	if ss.s.closing.Load() {
		c = causeShutdown
	}
	ss.cause.CompareAndSwap(uint32(causeUnset), uint32(c))
}

// readCause classifies the error of a read from (or write to) the client.
func (ss *session) readCause(err error) endCause {
	var errno syscall.Errno
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return causeClientEOF
	case errors.Is(err, net.ErrClosed):
		// Closed by the proxy: by Close (shutdown), or by whoever recorded
		// a cause first.
		if ss.s.closing.Load() {
			return causeShutdown
		}
		return causeOther
	case errors.Is(err, os.ErrDeadlineExceeded):
		return causeOther
	case errors.As(err, &errno):
		return causeClientReset
	}
	// Not the socket: the bytes themselves (a bad length, a message over
	// the limit, a broken TLS record).
	return causeProtocol
}

// countEnd counts the session's end under its cause.
func (ss *session) countEnd() {
	c := endCause(ss.cause.Load())
	if c == causeUnset {
		c = causeOther
		if ss.s.closing.Load() {
			c = causeShutdown
		}
	}
	ss.ep.ended[c].Add(1)
}

// endLogin ends a connection that never got to relay (refused, or the
// client left during startup or authentication).
func (ss *session) endLogin() {
	ss.countEnd()
	ss.s.untrack(ss.conn)
	ss.s.wg.Done()
}

// endedCounts returns an endpoint's ended connections by cause, without the
// causes never seen.
func (ep *endpoint) endedCounts() map[string]int64 {
	out := map[string]int64{}
	for c := causeTerminate; c < causeCount; c++ {
		if n := ep.ended[c].Load(); n > 0 {
			out[c.String()] = n
		}
	}
	return out
}
