package proxy

// Idle parking: a client idle for parkAfter gives its relay goroutine up
// to a small waiter (park), and client_idle_timeout ends it (idleDue).

import (
	"errors"
	"os"
	"time"
)

// park waits for the client's next bytes, then relays again on this
// goroutine. If the client's connection ends instead (EOF, a reset, a
// half-close, a close by the proxy), so does the session, here: going back
// to the relay would re-arm the idle deadline, which has passed, and park
// again at once, for ever.
func (ss *session) park(st *relayState, in *msgReader) {
	defer ss.s.goroutines.Add(-1)
	st.mu.Lock()
	st.idleArmed = time.Time{}
	if t := ss.s.cfg.ClientIdleTimeout; t > 0 {
		st.idleArmed = st.idleSince.Add(t)
	}
	_ = ss.c.SetReadDeadline(st.idleArmed)
	st.mu.Unlock()
	ss.ep.parked.Add(1)
	err := in.wait()
	ss.ep.parked.Add(-1)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		ss.setCause(ss.readCause(err))
		ss.end(st, quiet(err))
		ss.finish()
		return
	}
	// Bytes came, or client_idle_timeout passed: the relay handles both.
	ss.run(st, in)
}

// parkAfter is how long a client stays idle before its relay goroutine is
// replaced by a smaller one (see run).
const parkAfter = 250 * time.Millisecond

// errPark ends clientLoop for a client idle parkAfter.
var errPark = errors.New("client idle: park the relay")

// freeLocked reports whether the session is outside a transaction with
// nothing in flight: it may park, and client_idle_timeout runs. (A server
// connection it holds, in session mode or pinned, has its own reader.)
func (ss *session) freeLocked(st *relayState) bool {
	return st.txStatus == 'I' && st.pending == 0 && !st.unsynced &&
		st.resolved == nil && !st.aborted && !st.failedTx
}

// idleWait is how long a free session waits before clientLoop must look at
// it: to park it, or to end it (client_idle_timeout) if that comes first.
func (ss *session) idleWait() time.Duration {
	if t := ss.s.cfg.ClientIdleTimeout; t > 0 && t < parkAfter {
		return t
	}
	return parkAfter
}

// armIdleLocked makes sure a read deadline wakes clientLoop when the free
// session is due (idleSince + idleWait). Early is harmless (clientLoop
// looks and sets it again), so a deadline up to a quarter of the wait early
// is kept: a session in transaction mode becomes free after every
// transaction, and a timer update each time would cost more than the rare
// early wake-up.
func (ss *session) armIdleLocked(st *relayState) {
	w := ss.idleWait()
	want := st.idleSince.Add(w)
	if !st.idleArmed.IsZero() && !st.idleArmed.After(want) && want.Sub(st.idleArmed) <= w/4 {
		return
	}
	st.idleArmed = want
	_ = ss.c.SetReadDeadline(want)
}

type idleVerdict int

const (
	idleNotYet idleVerdict = iota
	idlePark
	idleTimedOut
)

// idleDue handles a client read deadline: a session still free long
// enough is parked or, past client_idle_timeout, told and ended; otherwise
// the deadline was early or the session is busy, and reading goes on.
func (ss *session) idleDue(st *relayState, in *msgReader) idleVerdict {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.idleArmed = time.Time{}
	if !ss.freeLocked(st) || in.buffered() != 0 || st.idleSince.IsZero() {
		_ = ss.c.SetReadDeadline(time.Time{})
		return idleNotYet
	}
	idle := time.Since(st.idleSince)
	if t := ss.s.cfg.ClientIdleTimeout; t > 0 && idle >= t {
		ss.sendLocked(st, errorResponse("FATAL", "57P05", "holdfast proxy: terminating connection due to idle timeout (client_idle_timeout)"))
		return idleTimedOut
	}
	if idle >= parkAfter/2 {
		return idlePark
	}
	ss.armIdleLocked(st)
	return idleNotYet
}
