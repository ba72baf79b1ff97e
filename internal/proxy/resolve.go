package proxy

// Commit resolution: a COMMIT lost with its server is looked up on the
// primary that followed (see resolveCommit and commitOutcome).

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

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
