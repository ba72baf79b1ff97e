package proxy

// Lost servers: what the session does when its server connection dies
// under it, and how it answers the client afterwards.

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
