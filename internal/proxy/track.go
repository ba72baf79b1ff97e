package proxy

// Tracking: what the session learns from each client message before it
// goes to the server (transaction state, prepared statements, the xid probe
// ahead of a COMMIT).

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
