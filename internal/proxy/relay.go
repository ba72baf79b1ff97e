package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxServerMessage bounds messages from PostgreSQL (its own limit is 1 GB).
const maxServerMessage = 1 << 30

// link is one server connection of a session. A session may go through
// several when the writer changes.
type link struct {
	hc     *pgconn.HijackedConn
	target Target
	out    *bufio.Writer
}

// relayState is what the two directions share. The session's state machine:
//
//	attached  -> (server lost while idle)              -> detached: the next message reconnects
//	attached  -> (lost with requests in flight)        -> detached after answering them with an error
//	attached  -> (lost inside a transaction, idle)     -> aborted: the next request gets 40001, then detached
type relayState struct {
	mu sync.Mutex
	// All fields below are guarded by mu.
	link     *link
	txStatus byte // from the last ReadyForQuery: 'I', 'T' or 'E'
	// pending counts sync points (Query, Sync) awaiting ReadyForQuery, and
	// commitPending whether one of them may commit (COMMIT, or a statement
	// outside a transaction block).
	pending       int
	commitPending bool
	aborted       bool
	// failedTx: the client was told its transaction failed (ReadyForQuery
	// 'E') after the server was lost; like PostgreSQL, refuse everything
	// but the end of the transaction block until it ends it.
	failedTx bool
	// resolving tracks commit resolutions under way (see resolveCommit).
	resolving sync.WaitGroup
	// probe, when set, receives the answer to the xid query the proxy sends
	// before forwarding a COMMIT; commitXid is that answer ("NULL": the
	// transaction wrote nothing) until the COMMIT completes.
	probe     chan probeResult
	commitXid string
	probeXid  string
	// stateful is set once the session may hold server-side state (SET,
	// LISTEN, temporary tables, ...): it is then never moved silently.
	stateful bool
	// prepared keeps the named Parse messages so that a new server
	// connection gets the same prepared statements.
	prepared map[string][]byte
	// clientW serialises writes to the client from both directions.
	clientW *bufio.Writer
}

// relay copies messages both ways until the client leaves. It frames
// messages rather than copying bytes blindly: it must know the transaction
// state to move an idle session to a new server when the writer changes.
func (ss *session) relay(hc *pgconn.HijackedConn, t Target) {
	st := &relayState{txStatus: 'I', prepared: map[string][]byte{}, clientW: bufio.NewWriterSize(ss.c, 16<<10)}
	ss.attach(st, hc, t)
	err := ss.clientLoop(st)
	if errors.Is(err, ErrMessageTooLarge) {
		st.mu.Lock()
		_, _ = st.clientW.Write(errorResponse("FATAL", "08P01", err.Error()))
		_ = st.clientW.Flush()
		st.mu.Unlock()
	}
	// A COMMIT being resolved answers the client and may attach a new
	// server connection: wait for it before tearing the session down.
	st.resolving.Wait()
	st.mu.Lock()
	l := st.link
	st.link = nil
	st.mu.Unlock()
	if l != nil {
		ss.detach(l)
	}
}

// attach makes hc the session's server connection, unless the session got
// one meanwhile (then hc is closed and false returned): two server
// connections must never be live for one session, or replies would be lost.
func (ss *session) attach(st *relayState, hc *pgconn.HijackedConn, t Target) bool {
	l := &link{hc: hc, target: t, out: bufio.NewWriterSize(hc.Conn, 16<<10)}
	st.mu.Lock()
	if st.link != nil {
		st.mu.Unlock()
		_ = hc.Conn.Close()
		return false
	}
	st.link = l
	ss.s.servers.Add(1)
	if !ss.ep.writer {
		ss.s.addReaderLoad(t.Name, 1)
	}
	ss.s.updateCancel(ss.key, cancelTarget{addr: t.Addr, pid: hc.PID, secret: hc.SecretKey})
	st.mu.Unlock()
	go ss.serverLoop(st, l)
	return true
}

func (ss *session) detach(l *link) {
	_ = l.hc.Conn.Close()
	ss.s.servers.Add(-1)
	if !ss.ep.writer {
		ss.s.addReaderLoad(l.target.Name, -1)
	}
}

// clientLoop reads client messages and forwards them, reconnecting a
// detached session first.
func (ss *session) clientLoop(st *relayState) error {
	in := newMsgReader(ss.c, ss.s.cfg.MaxMessageSize)
	for {
		msg, err := in.next()
		if err != nil {
			return quiet(err)
		}
		typ := msg[0]
		var l *link
		for {
			st.mu.Lock()
			if st.aborted || st.failedTx {
				break
			}
			if l = st.link; l != nil || typ == 'X' {
				break
			}
			stateful := st.stateful
			st.mu.Unlock()
			if stateful {
				_, _ = ss.c.Write(errorResponse("FATAL", "08006", "holdfast proxy: the server connection was lost and this session had server-side state (SET, LISTEN, temporary tables, session locks...) that cannot be moved to the new server; reconnect"))
				return nil
			}
			// Detached: move to the current server (waiting for one within
			// the hold window), with the same prepared statements.
			hc, t, err := ss.connect(ss.u)
			if err != nil {
				return nil // connect told the client why
			}
			if err := replay(hc, st); err != nil {
				_ = hc.Conn.Close()
				_, _ = ss.c.Write(errorResponse("FATAL", "57P03", "holdfast proxy: cannot restore prepared statements on the new server: "+err.Error()))
				return nil
			}
			ss.attach(st, hc, t)
		}
		// st.mu is held here.
		if st.aborted || st.failedTx {
			if typ == 'Q' || typ == 'S' {
				switch {
				case st.aborted:
					// Our transaction died with the old server.
					st.aborted, st.failedTx = false, true
					_, _ = st.clientW.Write(errorResponse("ERROR", "40001", "holdfast proxy: the primary changed and the transaction was rolled back; retry it"))
					_, _ = st.clientW.Write(readyForQuery('E'))
				case typ == 'Q' && endsTransaction(msg[5:]):
					st.failedTx = false
					_, _ = st.clientW.Write(commandComplete("ROLLBACK"))
					_, _ = st.clientW.Write(readyForQuery('I'))
				default:
					_, _ = st.clientW.Write(errorResponse("ERROR", "25P02", "current transaction is aborted, commands ignored until end of transaction block"))
					_, _ = st.clientW.Write(readyForQuery('E'))
				}
				_ = st.clientW.Flush()
			}
			st.mu.Unlock()
			if typ == 'X' {
				return nil
			}
			continue
		}
		if typ == 'X' {
			st.mu.Unlock()
			if l != nil {
				_, _ = l.out.Write(msg)
				_ = l.out.Flush()
			}
			return nil
		}
		if typ == 'Q' && ss.s.cfg.ResolveCommits && ss.ep.writer && st.txStatus == 'T' && st.pending == 0 && isCommit(msg[5:]) {
			// Learn the transaction's id first, so that if the server is
			// lost during the COMMIT its outcome can be looked up on the
			// new primary instead of being reported as unknown.
			ch := make(chan probeResult, 1)
			st.probe = ch
			st.mu.Unlock()
			_, _ = l.out.Write(xidProbe)
			_ = l.out.Flush()
			r := <-ch
			st.mu.Lock()
			if !r.ok || st.link != l {
				// Lost before the COMMIT was sent (during the probe, or
				// right after it): nothing was committed.
				st.aborted, st.failedTx = false, false
				_, _ = st.clientW.Write(errorResponse("ERROR", "40001", "holdfast proxy: the primary changed and the transaction was rolled back; retry it"))
				_, _ = st.clientW.Write(readyForQuery('I'))
				_ = st.clientW.Flush()
				st.mu.Unlock()
				continue
			}
			st.commitXid = r.xid
		}
		switch typ {
		case 'Q':
			st.pending++
			if (st.txStatus == 'I' && !cannotCommit(msg[5:])) || isCommit(msg[5:]) {
				st.commitPending = true
			}
			if !st.stateful && createsSessionState(cstring(msg[5:])) {
				st.stateful = true
			}
		case 'S':
			st.pending++
			if st.txStatus == 'I' {
				st.commitPending = true
			}
		case 'P':
			name := cstring(msg[5:])
			if name != "" {
				st.prepared[name] = append([]byte(nil), msg...)
			}
			if !st.stateful && createsSessionState(cstring(msg[5+len(name)+1:])) {
				st.stateful = true
			}
		case 'C':
			if len(msg) > 6 && msg[5] == 'S' {
				delete(st.prepared, cstring(msg[6:]))
			}
		}
		st.mu.Unlock()
		if _, err := l.out.Write(msg); err == nil && in.buffered() == 0 {
			_ = l.out.Flush()
		}
		// A write error means the server is gone: serverLoop sees it too
		// and answers the client.
	}
}

// serverLoop forwards one server connection's messages to the client until
// it ends, then decides what the client is told.
func (ss *session) serverLoop(st *relayState, l *link) {
	in := newMsgReader(l.hc.Conn, maxServerMessage)
	for {
		msg, err := in.next()
		if err == nil && msg[0] == 'E' && isFatal(msg) {
			// The server is shutting down (failover, switchover, restart):
			// treat it as lost rather than pass on a FATAL that would make
			// the client drop its connection.
			err = io.EOF
		}
		st.mu.Lock()
		if st.link != l {
			st.mu.Unlock()
			return
		}
		if err != nil {
			st.link = nil
			if st.probe != nil {
				st.probe <- probeResult{}
				st.probe = nil
			}
			ss.lostLocked(st)
			st.mu.Unlock()
			ss.detach(l)
			return
		}
		if st.probe != nil {
			// The answer to our xid probe: consumed here, never forwarded.
			switch msg[0] {
			case 'D':
				st.probeXid = dataRowFirst(msg)
			case 'Z':
				st.probe <- probeResult{ok: true, xid: st.probeXid}
				st.probe, st.probeXid = nil, ""
			}
			st.mu.Unlock()
			continue
		}
		if msg[0] == 'Z' && len(msg) == 6 {
			st.txStatus = msg[5]
			if st.pending > 0 {
				st.pending--
			}
			if st.pending == 0 {
				st.commitPending, st.commitXid = false, ""
			}
		}
		_, werr := st.clientW.Write(msg)
		if werr == nil && in.buffered() == 0 {
			werr = st.clientW.Flush()
		}
		st.mu.Unlock()
		if werr != nil {
			_ = ss.c.Close()
			return
		}
	}
}

// lostLocked tells the client what losing its server means for it.
func (ss *session) lostLocked(st *relayState) {
	ss.s.log.Debug("server lost", "pending", st.pending, "tx", string(st.txStatus), "commit_pending", st.commitPending, "xid", st.commitXid)
	if st.pending == 1 && st.commitXid != "" {
		// A COMMIT was in flight and we know its transaction: ask the new
		// primary what became of it.
		xid := st.commitXid
		st.pending, st.commitPending, st.commitXid, st.txStatus = 0, false, "", 'I'
		st.resolving.Add(1)
		go ss.resolveCommit(st, xid)
		return
	}
	switch {
	case st.pending > 0:
		code, msg := "40001", "holdfast proxy: the primary changed and the transaction was rolled back; retry it"
		if st.commitPending && st.txStatus != 'E' {
			code, msg = "08007", "holdfast proxy: the server was lost while a commit was in progress; its outcome is unknown"
		}
		_, _ = st.clientW.Write(errorResponse("ERROR", code, msg))
		status := byte('I')
		if code == "40001" && (st.txStatus == 'T' || st.txStatus == 'E') {
			// Inside a transaction block the client must end it, as after
			// any error in PostgreSQL.
			status, st.failedTx = 'E', true
		}
		for ; st.pending > 0; st.pending-- {
			_, _ = st.clientW.Write(readyForQuery(status))
		}
		_ = st.clientW.Flush()
	case st.txStatus == 'T' || st.txStatus == 'E':
		st.aborted = true
	}
	st.txStatus, st.commitPending = 'I', false
}

// replay prepares the session's named statements on a new server.
func replay(hc *pgconn.HijackedConn, st *relayState) error {
	st.mu.Lock()
	var msgs [][]byte
	for _, m := range st.prepared {
		msgs = append(msgs, m)
	}
	st.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	w := bufio.NewWriter(hc.Conn)
	for _, m := range msgs {
		_, _ = w.Write(m)
	}
	_, _ = w.Write([]byte{'S', 0, 0, 0, 4})
	if err := w.Flush(); err != nil {
		return err
	}
	in := newMsgReader(hc.Conn, maxServerMessage)
	var failed error
	for {
		msg, err := in.next()
		if err != nil {
			return err
		}
		switch msg[0] {
		case 'E':
			failed = errors.New(errorMessage(msg))
		case 'Z':
			return failed
		}
	}
}

func readyForQuery(status byte) []byte { return []byte{'Z', 0, 0, 0, 5, status} }

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return ""
}

// isCommit reports whether a simple Query starts with COMMIT or END.
func isCommit(body []byte) bool {
	q := strings.TrimSpace(cstring(body))
	if len(q) > 8 {
		q = q[:8]
	}
	q = strings.ToUpper(q)
	return strings.HasPrefix(q, "COMMIT") || strings.HasPrefix(q, "END")
}

// cannotCommit reports whether a simple Query run outside a transaction
// block certainly commits nothing (so losing it in flight is retryable).
func cannotCommit(body []byte) bool {
	q := strings.TrimRight(strings.ToUpper(strings.TrimSpace(cstring(body))), "; \t\n")
	if strings.Contains(q, ";") {
		return false // several statements: one of them may commit
	}
	for _, p := range []string{"BEGIN", "START TRANSACTION", "ROLLBACK", "ABORT", "SHOW "} {
		if strings.HasPrefix(q, p) {
			return true
		}
	}
	return q == ""
}

// endsTransaction reports whether a simple Query ends a transaction block.
func endsTransaction(body []byte) bool {
	q := strings.ToUpper(strings.TrimSpace(cstring(body)))
	for _, p := range []string{"ROLLBACK", "ABORT", "COMMIT", "END"} {
		if strings.HasPrefix(q, p) {
			return true
		}
	}
	return false
}

// errorFields parses an ErrorResponse body.
func errorFields(msg []byte) map[byte]string {
	out := map[byte]string{}
	b := msg[5:]
	for len(b) > 1 && b[0] != 0 {
		f := b[0]
		i := bytes.IndexByte(b[1:], 0)
		if i < 0 {
			break
		}
		out[f] = string(b[1 : 1+i])
		b = b[2+i:]
	}
	return out
}

func isFatal(msg []byte) bool {
	f := errorFields(msg)
	sev := f['V']
	if sev == "" {
		sev = f['S']
	}
	return sev == "FATAL" || sev == "PANIC"
}

func errorMessage(msg []byte) string {
	f := errorFields(msg)
	return f['C'] + ": " + f['M']
}

// quiet maps the errors of a connection closed at either end to nil.
func quiet(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// pickReader chooses the qualifying replica with the fewest sessions.
func (s *Server) pickReader() (Target, bool) {
	rs := s.router.Readers()
	if len(rs) == 0 {
		return Target{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	best := rs[0]
	for _, r := range rs[1:] {
		if s.readerLoad[r.Name] < s.readerLoad[best.Name] {
			best = r
		}
	}
	return best, true
}

type probeResult struct {
	ok  bool
	xid string
}

// xidProbe asks for the current transaction's id ("NULL" if it has none: it
// wrote nothing).
var xidProbe = func() []byte {
	q := "SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'NULL')\x00"
	b := []byte{'Q', 0, 0, 0, 0}
	b[4] = byte(4 + len(q))
	return append(b, q...)
}()

// dataRowFirst returns the first column of a DataRow as text ("" if NULL).
func dataRowFirst(msg []byte) string {
	if len(msg) < 11 || int(msg[5])<<8|int(msg[6]) < 1 {
		return ""
	}
	n := int(int32(uint32(msg[7])<<24 | uint32(msg[8])<<16 | uint32(msg[9])<<8 | uint32(msg[10])))
	if n < 0 || 11+n > len(msg) {
		return ""
	}
	return string(msg[11 : 11+n])
}

// resolveCommit answers a COMMIT whose server was lost: it looks the
// transaction up on the new primary (which holds every acknowledged commit)
// and tells the client COMMIT or a retryable 40001, then keeps the new
// server connection for the session.
func (ss *session) resolveCommit(st *relayState, xid string) {
	defer st.resolving.Done()
	reply := func(committed bool) {
		st.mu.Lock()
		if committed {
			_, _ = st.clientW.Write(commandComplete("COMMIT"))
		} else {
			_, _ = st.clientW.Write(errorResponse("ERROR", "40001", "holdfast proxy: the primary changed before the transaction committed; it was rolled back, retry it"))
		}
		_, _ = st.clientW.Write(readyForQuery('I'))
		_ = st.clientW.Flush()
		st.mu.Unlock()
	}
	if xid == "NULL" {
		reply(true) // it wrote nothing: there was nothing to lose
		return
	}
	hc, t, err := ss.connect(ss.u)
	if err != nil {
		_ = ss.c.Close()
		return
	}
	status, err := queryOne(hc, "SELECT coalesce(pg_xact_status('"+xid+"'::xid8), 'unknown')")
	if err != nil {
		// An id the new primary never saw ("in the future") was never committed.
		status = "aborted"
	}
	// Attach before answering, so that the client's next statement finds
	// the new server connection.
	st.mu.Lock()
	stateful := st.stateful
	st.mu.Unlock()
	if stateful || replay(hc, st) != nil {
		_ = hc.Conn.Close()
	} else {
		ss.attach(st, hc, t)
	}
	ss.s.log.Debug("resolved in-flight commit", "xid", xid, "status", status)
	reply(status == "committed")
}

func commandComplete(tag string) []byte {
	b := []byte{'C', 0, 0, 0, byte(4 + len(tag) + 1)}
	b = append(b, tag...)
	return append(b, 0)
}

// queryOne runs a simple query on a fresh server connection and returns the
// first column of the first row.
func queryOne(hc *pgconn.HijackedConn, sql string) (string, error) {
	q := append([]byte{'Q', 0, 0, 0, 0}, sql...)
	q = append(q, 0)
	n := len(q) - 1
	q[1], q[2], q[3], q[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	if _, err := hc.Conn.Write(q); err != nil {
		return "", err
	}
	in := newMsgReader(hc.Conn, maxServerMessage)
	var val string
	var qerr error
	for {
		msg, err := in.next()
		if err != nil {
			return "", err
		}
		switch msg[0] {
		case 'D':
			val = dataRowFirst(msg)
		case 'E':
			qerr = errors.New(errorMessage(msg))
		case 'Z':
			return val, qerr
		}
	}
}
