package proxy

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
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

// dropLocked gives back an idle session's server connection, closing it.
func (ss *session) dropLocked(st *relayState) {
	sc, done := st.sc, st.serverDone
	st.sc = nil
	ss.detachLocked(st)
	st.mu.Unlock()
	_ = sc.conn.Close()
	<-done
	sc.p.release(sc, false)
	st.mu.Lock()
}

// refuseLocked answers a client whose transaction died with its server.
func (ss *session) refuseLocked(st *relayState, msg []byte) {
	typ := msg[0]
	if typ != 'Q' && typ != 'S' {
		return // swallowed until the Sync, as PostgreSQL does after an error
	}
	switch {
	case st.aborted:
		st.aborted, st.failedTx = false, true
		ss.sendLocked(st, errorResponse("ERROR", "40001", "holdfast proxy: the primary changed and the transaction was rolled back; retry it"), readyForQuery('E'))
	case typ == 'Q' && endsTransaction(msg[5:]):
		st.failedTx = false
		ss.sendLocked(st, commandComplete("ROLLBACK"), readyForQuery('I'))
	default:
		ss.sendLocked(st, errorResponse("ERROR", "25P02", "current transaction is aborted, commands ignored until end of transaction block"), readyForQuery('E'))
	}
}

// trackLocked updates the session state for a message about to go to sc
// and returns the messages to send before it: the xid probe ahead of a
// COMMIT, and Close/Parse pairs that give sc the client's prepared
// statements.
func (ss *session) trackLocked(st *relayState, sc *serverConn, msg []byte) [][]byte {
	ss.s.metrics.fromClient(ss.ep, msg)
	var pre [][]byte
	switch msg[0] {
	case 'Q':
		body := msg[5:]
		st.pending++
		commit := isCommit(body)
		if (st.txStatus == 'I' && !cannotCommit(body)) || commit {
			st.commitPending = true
		}
		if !st.stateful && createsSessionState(sqlText(body)) {
			st.stateful = true
		}
		if dropsPrepared(body) {
			sc.unsure = true
		}
		if commit && ss.s.cfg.ResolveCommits && ss.ep.writer && st.txStatus == 'T' && st.pending == 1 {
			// Learn the transaction's id in the same round trip, so that
			// if the server is lost during the COMMIT its outcome can be
			// looked up on the new primary instead of reported unknown.
			st.probing, st.probeXid, st.probeFailed, st.commitXid = true, "", false, ""
			pre = append(pre, xidProbe)
		}
	case 'S':
		st.pending++
		st.unsynced = false
		if st.txStatus == 'I' {
			st.commitPending = true
		}
	case 'F':
		st.pending++
		if st.txStatus == 'I' {
			st.commitPending = true
		}
	case 'P':
		st.unsynced = true
		name, rest := splitCString(msg[5:])
		if !st.stateful && createsSessionState(sqlText(rest)) {
			st.stateful = true
		}
		if name == "" {
			sc.expect = append(sc.expect, expectation{reply: '1'})
			break
		}
		body := string(rest)
		if st.stmts == nil {
			st.stmts = map[string]string{}
		}
		st.stmts[name] = body
		if _, has := sc.prepared[name]; has || sc.unsure {
			pre = append(pre, closeStmt(name))
			sc.expect = append(sc.expect, expectation{reply: '3', injected: true})
		}
		sc.prepared[name] = body
		sc.expect = append(sc.expect, expectation{reply: '1'})
	case 'B':
		st.unsynced = true
		_, rest := splitCString(msg[5:]) // portal
		pre = ss.ensureLocked(st, sc, cstring(rest), pre)
	case 'D':
		st.unsynced = true
		if len(msg) > 6 && msg[5] == 'S' {
			pre = ss.ensureLocked(st, sc, cstring(msg[6:]), pre)
		}
	case 'C':
		st.unsynced = true
		if len(msg) > 6 {
			if msg[5] == 'S' {
				name := cstring(msg[6:])
				delete(st.stmts, name)
				delete(sc.prepared, name)
			}
			sc.expect = append(sc.expect, expectation{reply: '3'})
		}
	case 'E', 'H':
		st.unsynced = true
	}
	return pre
}

// ensureLocked makes sure the server has the client's statement name as the
// client prepared it (another client's statement of the same name, or none,
// may be there) before a message that uses it.
func (ss *session) ensureLocked(st *relayState, sc *serverConn, name string, pre [][]byte) [][]byte {
	if name == "" {
		return pre
	}
	body, mine := st.stmts[name]
	cur, has := sc.prepared[name]
	if mine && has && cur == body {
		return pre
	}
	if has || sc.unsure {
		// Not ours, or not the same: the server must not run it.
		pre = append(pre, closeStmt(name))
		sc.expect = append(sc.expect, expectation{reply: '3', injected: true})
		delete(sc.prepared, name)
	}
	if mine {
		pre = append(pre, parseMsg(name, body))
		sc.expect = append(sc.expect, expectation{reply: '1', injected: true})
		sc.prepared[name] = body
	}
	return pre
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

// lostLocked tells the client what losing its server means for it.
func (ss *session) lostLocked(st *relayState) {
	ss.s.log.Debug("server lost", "pending", st.pending, "tx", string(st.txStatus), "commit_pending", st.commitPending, "xid", st.commitXid, "probing", st.probing)
	if st.pending == 1 && st.commitXid != "" && !st.probing {
		// A COMMIT was in flight and we know its transaction: ask the new
		// primary what became of it.
		lost := lostCommit{probe: st.commitXid, member: st.commitOn}
		st.pending, st.commitPending, st.commitXid, st.txStatus = 0, false, "", 'I'
		st.resolved = make(chan struct{})
		ss.s.goroutines.Add(1)
		go ss.resolveCommit(st, lost)
		return
	}
	if st.probing && st.lostOrderly && st.pending == 1 {
		// The server ended the connection without answering the probe
		// sent just ahead of the COMMIT: it never ran the COMMIT (it
		// flushes each answer before reading the next message).
		st.probing, st.pending, st.commitPending, st.txStatus = false, 0, false, 'I'
		ss.sendLocked(st, errorResponse("ERROR", "40001", "holdfast proxy: the primary changed before the transaction committed; it was rolled back, retry it"), readyForQuery('I'))
		return
	}
	st.probing = false
	switch {
	case st.pending > 0:
		code, msg := "40001", "holdfast proxy: the primary changed and the transaction was rolled back; retry it"
		if st.commitPending && st.txStatus != 'E' {
			code, msg = "08007", "holdfast proxy: the server was lost while a commit was in progress; its outcome is unknown"
		}
		status := byte('I')
		if code == "40001" && (st.txStatus == 'T' || st.txStatus == 'E') {
			// Inside a transaction block the client must end it, as after
			// any error in PostgreSQL.
			status, st.failedTx = 'E', true
		}
		msgs := [][]byte{errorResponse("ERROR", code, msg)}
		for ; st.pending > 0; st.pending-- {
			msgs = append(msgs, readyForQuery(status))
		}
		ss.sendLocked(st, msgs...)
	case st.txStatus == 'T' || st.txStatus == 'E':
		st.aborted = true
	}
	st.txStatus, st.commitPending, st.commitXid, st.unsynced = 'I', false, "", false
}

// lostCommit is a COMMIT lost with its server: the xid probe's answer and
// the member it was sent to.
type lostCommit struct {
	probe  string // "<xid> <postmaster start, Unix µs>"; xid "NULL": wrote nothing
	member string
}

// resolveCommit answers a COMMIT whose server was lost: it looks the
// transaction up on the new primary (which holds every acknowledged commit)
// and tells the client COMMIT, a retryable 40001, or 08007 when that cannot
// be told (see commitOutcome).
func (ss *session) resolveCommit(st *relayState, lost lostCommit) {
	defer ss.s.goroutines.Add(-1)
	reply := func(msgs ...[]byte) {
		st.mu.Lock()
		ss.sendLocked(st, msgs...)
		close(st.resolved)
		st.resolved = nil
		st.mu.Unlock()
	}
	committed := [][]byte{commandComplete("COMMIT"), readyForQuery('I')}
	rolledBack := [][]byte{errorResponse("ERROR", "40001", "holdfast proxy: the primary changed before the transaction committed; it was rolled back, retry it"), readyForQuery('I')}
	unknown := [][]byte{errorResponse("ERROR", "08007", "holdfast proxy: the server was lost while a commit was in progress; its outcome is unknown"), readyForQuery('I')}
	xidText, oldStarted, _ := strings.Cut(lost.probe, " ")
	if xidText == "NULL" {
		ss.s.metrics.commitResolved(ss.ep, outcomeCommitted)
		reply(committed...) // it wrote nothing: there was nothing to lose
		return
	}
	xid, err := strconv.ParseUint(xidText, 10, 64)
	if err != nil {
		ss.s.metrics.commitResolved(ss.ep, outcomeUnknown)
		reply(unknown...)
		return
	}
	sc, err := ss.acquire()
	if err != nil {
		var ce *clientError
		if !errors.As(err, &ce) {
			ce = &clientError{"08007", err.Error()}
		}
		ss.s.metrics.commitResolved(ss.ep, outcomeUnknown)
		ss.setCause(causeServerLost)
		reply(errorResponse("FATAL", "08007", "holdfast proxy: the server was lost while a commit was in progress and its outcome cannot be looked up: "+ce.msg))
		_ = ss.c.Close()
		return
	}
	answer, err := queryOne(sc, "SELECT coalesce(pg_xact_status('"+xidText+"'::xid8), 'unknown') || ' ' || "+startedUSExpr)
	if err != nil && !isPgError(err) {
		sc.p.release(sc, false)
		ss.s.metrics.commitResolved(ss.ep, outcomeUnknown)
		reply(unknown...)
		return
	}
	// An error here means an id the new primary never saw ("in the
	// future"): it was never committed.
	status, curStarted, _ := strings.Cut(answer, " ")
	cur := serverIncarnation{member: sc.p.target.Name, startedUS: parseInt(curStarted)}
	old := serverIncarnation{member: lost.member, startedUS: parseInt(oldStarted)}
	first, reportStarted := ss.s.router.incarnation(cur.member)
	out := commitOutcome(xid, status, err != nil, old, cur, first, reportStarted)
	reusable := true
	if out == outcomeCommitted {
		// Found committed on the new primary, which may be the only member
		// holding it (the COMMIT was never confirmed by a standby, or a
		// primary restarted in place recovered it): a commit of our own
		// there waits for its synchronous standbys, and so makes this one
		// durable before the client is told.
		if _, berr := queryOne(sc, durabilityBarrier); berr != nil {
			ss.s.log.Warn("resolved in-flight commit found committed, but its durability could not be confirmed", "xid", xid, "err", berr)
			out, reusable = outcomeUnknown, false // maybe inside an aborted transaction
		}
	}
	sc.p.release(sc, reusable)
	ss.s.log.Debug("resolved in-flight commit", "xid", xid, "status", status, "err", err, "old", old, "new", cur, "first_xid", first, "outcome", out)
	ss.s.metrics.commitResolved(ss.ep, out)
	switch out {
	case outcomeCommitted:
		reply(committed...)
	case outcomeRolledBack, outcomeReused:
		reply(rolledBack...)
	default:
		reply(unknown...)
	}
}

// durabilityBarrier writes WAL in a transaction of its own (a
// transactional logical message, open to any role, decoded by nobody), so
// that its COMMIT waits for the synchronous standbys: everything the server
// committed before is then durable on its quorum.
const durabilityBarrier = "BEGIN; SELECT pg_logical_emit_message(true, 'holdfast', 'commit resolved'); COMMIT"

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// serverIncarnation is one run of a member's postmaster.
type serverIncarnation struct {
	member    string
	startedUS int64 // pg_postmaster_start_time(), Unix µs; 0 if unknown
}

type outcome int

const (
	outcomeUnknown outcome = iota
	outcomeCommitted
	outcomeRolledBack
	// outcomeReused: found committed, but under an id the new primary had
	// handed out again; somebody else's transaction: rolled back.
	outcomeReused
	outcomeCount
)

func (o outcome) String() string {
	return [...]string{"unknown", "committed", "rolled_back", "id_reused"}[o]
}

// commitOutcome decides what became of transaction xid, whose COMMIT was
// in flight on server old when it was lost, from its status on server cur
// (statusErr: cur refused to look it up, an id it never saw).
//
// A status of "committed" is not enough: a transaction id is unique only
// within the history a server has replayed. The old server may have handed
// out xid without any of its WAL reaching cur (a commit is flushed, and so
// streamed, only as it commits); cur then hands the same id out again to
// its own clients, and finds "committed" for somebody else's transaction.
// firstXID, from cur's agent, is the first id cur could hand out since it
// became writable (reportStarted names the postmaster it was read on): an
// id below it was decided by replayed WAL; one from it on was given out by
// cur itself, so it is ours only if old is cur, the same postmaster run.
func commitOutcome(xid uint64, status string, statusErr bool, old, cur serverIncarnation, firstXID uint64, reportStarted int64) outcome {
	switch {
	case statusErr || status != "committed":
		return outcomeRolledBack
	case old.member == cur.member && old.startedUS != 0 && old.startedUS == cur.startedUS:
		return outcomeCommitted // the same server process: no id is handed out twice
	case firstXID == 0 || cur.startedUS == 0 || reportStarted != cur.startedUS:
		return outcomeUnknown // the report does not describe the server asked
	case xid < firstXID:
		return outcomeCommitted
	}
	return outcomeReused
}

type pgError struct{ msg string }

func (e *pgError) Error() string { return e.msg }

func isPgError(err error) bool {
	var pe *pgError
	return errors.As(err, &pe)
}

// queryOne runs a simple query on a server connection and returns the
// first column of the first row; a *pgError if the server answered with an
// error.
func queryOne(sc *serverConn, sql string) (string, error) {
	_ = sc.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer sc.conn.SetDeadline(time.Time{})
	if _, err := sc.out.Write(simpleQuery(sql)); err != nil {
		return "", err
	}
	if err := sc.out.Flush(); err != nil {
		return "", err
	}
	var val string
	var qerr error
	for {
		msg, err := sc.in.next()
		if err != nil {
			return "", err
		}
		switch msg[0] {
		case 'D':
			val = dataRowFirst(msg)
		case 'E':
			qerr = &pgError{errorMessage(msg)}
		case 'Z':
			return val, qerr
		}
	}
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
