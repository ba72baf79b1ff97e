package proxy

import (
	"bufio"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxServerMessage bounds messages from PostgreSQL (its own limit is 1 GB).
const maxServerMessage = 1 << 30

var clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// relayState is what the two directions of a session share. The session
// holds a server connection (sc) only while it needs one: for its whole
// life in session mode, for each transaction in transaction mode (longer
// once pinned by session state). When the server is lost:
//
//	idle, outside a transaction  -> nothing to tell: the next message gets a new server
//	requests in flight           -> they are answered with an error (40001, or 08007 for a COMMIT of unknown outcome)
//	idle inside a transaction    -> aborted: the next request gets 40001, then the block must be ended
type relayState struct {
	mu sync.Mutex
	// All fields below are guarded by mu.
	sc         *serverConn
	serverDone chan struct{} // closed when sc's serverLoop returns
	txStatus   byte          // from the last ReadyForQuery: 'I', 'T' or 'E'
	// pending counts sync points (Query, Sync, FunctionCall) awaiting
	// ReadyForQuery, and commitPending whether one of them may commit.
	// unsynced: extended-protocol messages were sent since the last Sync.
	pending       int
	unsynced      bool
	commitPending bool
	aborted       bool
	// failedTx: the client was told its transaction failed (ReadyForQuery
	// 'E') after the server was lost; like PostgreSQL, refuse everything
	// but the end of the transaction block until it ends it.
	failedTx bool
	// probing: the xid probe sent ahead of a COMMIT has not been answered
	// yet; commitXid is its answer ("<xid> <postmaster start>", the xid
	// "NULL" if the transaction wrote nothing) until the COMMIT completes,
	// and commitOn the member it was sent to.
	probing     bool
	lostOrderly bool
	probeXid    string
	probeFailed bool
	commitXid   string
	commitOn    string
	// resolved is non-nil while a COMMIT lost with its server is being
	// looked up on the new primary; closed when the client has its answer.
	resolved chan struct{}
	// stateful is set once the session may hold server-side state (SET,
	// LISTEN, temporary tables, ...): it is then pinned to its server and
	// never moved silently.
	stateful bool
	// stmts are the client's named prepared statements (name -> Parse body
	// after the name), re-prepared on whichever server it gets.
	stmts map[string]string
	// clientW buffers writes to the client while a server is attached.
	clientW *bufio.Writer
	// loadOn is the replica whose reader load counts this session.
	loadOn string
	// readerChecked is when a reader session last checked that its
	// replica still qualifies (readerRecheck).
	readerChecked time.Time
	// idleSince is when the session last became free (outside a
	// transaction, nothing in flight; zero: busy since). idleArmed is
	// the client read deadline set to wake clientLoop then (zero: none).
	idleSince, idleArmed time.Time
	// writing: clientLoop is writing to sc outside the lock. sc must not
	// go back to the pool before it is done: releasableLocked waits on
	// writeDone, counted in writeWaiters so that the writer takes the lock
	// to signal only when someone waits.
	writing      atomic.Bool
	writeWaiters atomic.Int32
	writeDone    *sync.Cond
}

// sendLocked writes proxy-made messages to the client.
func (ss *session) sendLocked(st *relayState, msgs ...[]byte) {
	ss.s.metrics.sent(ss.ep, msgs)
	if st.clientW != nil {
		for _, m := range msgs {
			_, _ = st.clientW.Write(m)
		}
		_ = st.clientW.Flush()
		return
	}
	var b []byte
	for _, m := range msgs {
		b = append(b, m...)
	}
	_ = ss.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = ss.c.Write(b)
	_ = ss.c.SetWriteDeadline(time.Time{})
}

// relay copies messages both ways until the client leaves. It frames
// messages rather than copying bytes blindly: it must know the transaction
// state to lend server connections per transaction and to move an idle
// session to a new server when the writer changes.
func (ss *session) relay() {
	ss.cio = fastIO(ss.c)
	st := &relayState{txStatus: 'I'}
	st.writeDone = sync.NewCond(&st.mu)
	if ss.ep.writer {
		ss.s.mu.Lock()
		ss.st = st
		ss.s.sessions[ss] = struct{}{}
		ss.s.mu.Unlock()
	}
	ss.run(st, newMsgReader(ss.cio, ss.s.cfg.MaxMessageSize))
}

// run relays until the client leaves, or until it has been idle long
// enough to park: then a goroutine with a small stack waits for its next
// message in its place (an idle client costs about 2 KiB of stack instead
// of the relay's 4 KiB, which matters with thousands of them).
func (ss *session) run(st *relayState, in *msgReader) {
	err := ss.clientLoop(st, in)
	if errors.Is(err, errPark) {
		ss.s.goroutines.Add(1)
		go ss.park(st, in)
		return
	}
	ss.end(st, err)
	ss.finish()
}

// end gives back what the relay held once the client has left.
func (ss *session) end(st *relayState, err error) {
	if ss.ep.writer {
		defer func() {
			ss.s.mu.Lock()
			delete(ss.s.sessions, ss)
			ss.s.mu.Unlock()
		}()
	}
	st.mu.Lock()
	if errors.Is(err, ErrMessageTooLarge) {
		ss.sendLocked(st, errorResponse("FATAL", "08P01", err.Error()))
	}
	for st.resolved != nil {
		ch := st.resolved
		st.mu.Unlock()
		<-ch
		st.mu.Lock()
	}
	sc, done := st.sc, st.serverDone
	reusable := st.pending == 0 && !st.unsynced && st.txStatus == 'I' && !st.probing
	stateful := st.stateful
	if sc != nil {
		st.sc = nil
		ss.detachLocked(st)
	}
	st.mu.Unlock()
	if sc == nil {
		return
	}
	// Stop the server reader without closing the connection, so that it
	// can go back to the pool.
	_ = sc.conn.SetReadDeadline(time.Unix(1, 0))
	<-done
	_ = sc.conn.SetReadDeadline(time.Time{})
	if reusable && sc.in.buffered() != 0 {
		reusable = false
	}
	if reusable && stateful {
		reusable = resetServer(sc)
	}
	sc.p.release(sc, reusable)
}

// resetServer clears session state (SET, LISTEN, temporary tables,
// prepared statements...) so that the connection can serve another client.
func resetServer(sc *serverConn) bool {
	_ = sc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer sc.conn.SetDeadline(time.Time{})
	if _, err := sc.out.Write(simpleQuery("DISCARD ALL")); err != nil || sc.out.Flush() != nil {
		return false
	}
	for {
		msg, err := sc.in.next()
		if err != nil {
			return false
		}
		switch msg[0] {
		case 'E':
			return false
		case 'Z':
			clear(sc.prepared)
			sc.unsure = false
			return msg[5] == 'I'
		}
	}
}

// attachLocked gives the session sc and starts forwarding its replies.
func (ss *session) attachLocked(st *relayState, sc *serverConn) {
	st.sc = sc
	w := clientWriters.Get().(*bufio.Writer)
	w.Reset(ss.cio)
	st.clientW = w
	ss.s.servers.Add(1)
	if !ss.ep.writer {
		st.loadOn = sc.p.target.Name
		ss.s.addReaderLoad(st.loadOn, 1)
	}
	ss.cancelTo.Store(sc.cancel)
	done := make(chan struct{})
	st.serverDone = done
	ss.s.goroutines.Add(1)
	go ss.serverLoop(st, sc, done)
}

// detachLocked undoes attachLocked's bookkeeping once st.sc is cleared.
func (ss *session) detachLocked(st *relayState) {
	if st.clientW != nil {
		_ = st.clientW.Flush()
		st.clientW.Reset(nil)
		clientWriters.Put(st.clientW)
		st.clientW = nil
	}
	ss.s.servers.Add(-1)
	if st.loadOn != "" {
		ss.s.addReaderLoad(st.loadOn, -1)
		st.loadOn = ""
	}
	ss.cancelTo.Store(nil)
}

// clientLoop reads client messages and forwards them, borrowing a server
// connection first when the session holds none.
func (ss *session) clientLoop(st *relayState, in *msgReader) error {
	for {
		st.mu.Lock()
		if ss.freeLocked(st) && in.buffered() == 0 {
			if st.idleSince.IsZero() {
				st.idleSince = time.Now()
			}
			ss.armIdleLocked(st)
		}
		st.mu.Unlock()
		msg, err := in.next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				switch ss.idleDue(st, in) {
				case idleTimedOut:
					ss.setCause(causeIdleTimeout)
					return nil
				case idlePark:
					return errPark
				}
				continue
			}
			ss.setCause(ss.readCause(err))
			return quiet(err)
		}
		typ := msg[0]
		if typ == 'X' {
			ss.setCause(causeTerminate)
			return nil // the server connection is not the client's to end
		}
		st.mu.Lock()
		st.idleSince = time.Time{}
		for st.resolved != nil {
			// A COMMIT is being resolved: its answer comes first.
			ch := st.resolved
			st.mu.Unlock()
			<-ch
			st.mu.Lock()
		}
		if st.aborted || st.failedTx {
			ss.refuseLocked(st, msg)
			st.mu.Unlock()
			continue
		}
		if ss.ep.writer && st.txStatus == 'I' && st.pending == 0 && !st.unsynced && typ != 'S' && typ != 'H' {
			// New work: during a planned switchover it waits for the new
			// primary, and a server connection left on the old one is
			// dropped first (it is closing).
			if ss.s.hold.Load() != nil {
				st.mu.Unlock()
				ss.s.metrics.heldSwitchover(ss.ep, ss.waitHold)
				st.mu.Lock()
			}
			if st.sc != nil && ss.s.router.stale(st.sc.p.target) {
				ss.dropLocked(st)
			}
		}
		if !ss.ep.writer && st.sc != nil && st.txStatus == 'I' && st.pending == 0 && !st.unsynced && typ != 'S' && typ != 'H' &&
			time.Since(st.readerChecked) >= readerRecheck {
			// New work on a reader session: if its replica no longer
			// qualifies (it fell behind, stopped streaming, left the
			// writer's history), the session moves to one that does, as a
			// writer session moves to a new primary; a session with
			// server-side state is ended instead (below).
			st.readerChecked = time.Now()
			if !ss.s.router.servesReads(st.sc.p.target) {
				ss.dropLocked(st)
			}
		}
		if st.sc == nil {
			switch typ {
			case 'S':
				// Nothing in flight: answer the Sync ourselves.
				ss.sendLocked(st, readyForQuery(st.txStatus))
				st.mu.Unlock()
				continue
			case 'H':
				st.mu.Unlock()
				continue
			}
			if st.stateful {
				ss.setCause(causeServerLost)
				ss.sendLocked(st, errorResponse("FATAL", "08006", "holdfast proxy: the server connection was lost and this session had server-side state (SET, LISTEN, temporary tables, session locks...) that cannot be moved to the new server; reconnect"))
				st.mu.Unlock()
				return nil
			}
			st.mu.Unlock()
			sc := ss.acquireIdle()
			if sc == nil {
				var err error
				if sc, err = ss.acquire(); err != nil {
					ss.setCause(causeUnavailable)
					ss.fatalErr(err)
					return nil
				}
			}
			st.mu.Lock()
			ss.attachLocked(st, sc)
		}
		sc := st.sc
		pre := ss.trackLocked(st, sc, msg)
		st.writing.Store(true)
		st.mu.Unlock()
		for _, m := range pre {
			_, _ = sc.out.Write(m)
		}
		if _, err := sc.out.Write(msg); err == nil && !in.ready() {
			_ = sc.out.Flush()
		}
		// A write error means the server is gone: serverLoop sees it too
		// and answers the client.
		st.writing.Store(false)
		if st.writeWaiters.Load() > 0 {
			st.mu.Lock()
			st.writeDone.Broadcast()
			st.mu.Unlock()
		}
	}
}

// serverLoop forwards sc's messages to the client until the session gives
// sc back or it is lost.
func (ss *session) serverLoop(st *relayState, sc *serverConn, done chan struct{}) {
	defer ss.s.goroutines.Add(-1)
	defer close(done)
	for {
		msg, err := sc.in.next()
		st.mu.Lock()
		// Handle what has arrived under one acquisition of the lock.
		for {
			switch ss.serverMsgLocked(st, sc, msg, err) {
			case serverGone:
				st.mu.Unlock()
				return
			case serverLost:
				st.mu.Unlock()
				sc.p.release(sc, false)
				return
			case serverReleased:
				st.mu.Unlock()
				sc.p.release(sc, true)
				return
			case clientGone:
				st.mu.Unlock()
				ss.setCause(causeClientReset)
				_ = ss.c.Close() // clientLoop ends the session
				msg = nil
			}
			if msg == nil || !sc.in.ready() {
				break
			}
			msg, err = sc.in.next()
		}
		if msg != nil {
			st.mu.Unlock()
		}
	}
}

// serverStep is what serverLoop does after a server message.
type serverStep int

const (
	serverNext     serverStep = iota // read on
	serverGone                       // the session gave sc back: stop
	serverLost                       // sc is lost: stop, close it
	serverReleased                   // transaction over: stop, sc goes back to the pool
	clientGone                       // writing to the client failed: close it
)

// serverMsgLocked handles a message from sc (or the error reading it):
// bookkeeping, then passing it to the client unless the proxy asked for it.
func (ss *session) serverMsgLocked(st *relayState, sc *serverConn, msg []byte, err error) serverStep {
	if err == nil && msg[0] == 'E' && isFatal(msg) {
		// The server is shutting down (failover, switchover, restart):
		// treat it as lost rather than pass on a FATAL that would make
		// the client drop its connection.
		err = io.EOF
	}
	if st.sc != sc {
		return serverGone
	}
	if err != nil {
		st.sc = nil
		// The server ended the connection itself (it exited, or said
		// FATAL): everything it wrote has arrived.
		st.lostOrderly = errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
		ss.lostLocked(st)
		ss.detachLocked(st)
		return serverLost
	}
	if st.probing {
		// The answer to our xid probe: consumed here, never forwarded.
		switch msg[0] {
		case 'D':
			st.probeXid = dataRowFirst(msg)
		case 'E':
			st.probeFailed = true
		case 'Z':
			st.probing = false
			if !st.probeFailed {
				st.commitXid, st.commitOn = st.probeXid, sc.p.target.Name
			}
		}
		ss.flushIdleLocked(st, sc)
		return serverNext
	}
	switch msg[0] {
	case '1', '3':
		if len(sc.expect) > 0 {
			e := sc.expect[0]
			sc.expect = sc.expect[1:]
			if e.reply != msg[0] {
				ss.s.log.Warn("prepared statement bookkeeping out of step; re-preparing from now on", "got", string(msg[0]), "want", string(e.reply))
				sc.unsure, sc.expect = true, sc.expect[:0]
			} else if e.injected {
				ss.flushIdleLocked(st, sc)
				return serverNext
			}
		}
	case 'Z':
		if len(msg) == 6 {
			st.txStatus = msg[5]
		}
		if st.pending > 0 {
			st.pending--
		}
		if st.pending == 0 {
			st.commitPending, st.commitXid = false, ""
		}
		if len(sc.expect) > 0 {
			// Skipped after an error: what they did is unknown.
			sc.unsure, sc.expect = true, sc.expect[:0]
		}
	}
	ss.s.metrics.fromServer(ss.ep, msg)
	_, werr := st.clientW.Write(msg)
	if werr == nil && !sc.in.ready() {
		werr = st.clientW.Flush()
	}
	if msg[0] == 'Z' && ss.s.cfg.PoolMode == PoolTransaction && ss.releasableLocked(st, sc) {
		// Transaction over: give the server back.
		_ = st.clientW.Flush()
		st.sc = nil
		ss.detachLocked(st)
		st.idleSince = time.Now()
		ss.armIdleLocked(st)
		return serverReleased
	}
	if msg[0] == 'Z' && ss.freeLocked(st) {
		// Free again, keeping its server (session mode, or pinned): wake
		// clientLoop when the session is due to park or time out. Its
		// read began while the request was in flight, with no deadline
		// after a park.
		if st.idleSince.IsZero() {
			st.idleSince = time.Now()
		}
		ss.armIdleLocked(st)
	}
	if werr != nil {
		return clientGone
	}
	return serverNext
}

// flushIdleLocked flushes what was written to the client unless another
// server message is ready to go with it.
func (ss *session) flushIdleLocked(st *relayState, sc *serverConn) {
	if !sc.in.ready() && st.clientW != nil {
		_ = st.clientW.Flush()
	}
}

// releasableLocked reports whether the session can give sc back now: no
// transaction, nothing in flight, no session state. It waits for a write
// to sc that is finishing (its reply has come: only bookkeeping is left).
func (ss *session) releasableLocked(st *relayState, sc *serverConn) bool {
	free := func() bool {
		return st.sc == sc && st.pending == 0 && !st.unsynced && st.txStatus == 'I' && !st.stateful && !st.probing
	}
	if !free() {
		return false
	}
	// Whatever clientLoop is writing was sent before the reply that made
	// the session free: its write has returned, or is about to.
	st.writeWaiters.Add(1)
	for st.writing.Load() && st.sc == sc {
		st.writeDone.Wait()
	}
	st.writeWaiters.Add(-1)
	return free()
}
