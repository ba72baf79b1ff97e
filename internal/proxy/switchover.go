package proxy

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/store"
)

// A planned switchover costs clients no error when the proxy and the old
// primary's agent take turns:
//
//  1. an operator asks for a switchover (topology.switchover in etcd);
//  2. every proxy holds new work on its writer endpoint (idle sessions'
//     next transaction waits), lets the transactions in flight finish
//     (bounded by drain_timeout) and acknowledges in its etcd report;
//  3. the old primary's agent, having waited for the acknowledgements,
//     stops PostgreSQL and hands the leader key to the target;
//  4. the target promotes and clears topology.switchover: the proxies
//     release the held work to it.
//
// A session whose idle server connection was on the old primary is moved
// before its next transaction, so it never sees that connection close.

// hold is one switchover's hold on new work.
type hold struct {
	token    string
	released chan struct{}
}

// holdLoop follows the topology's switchover request.
func (s *Server) holdLoop() {
	var cur *hold
	release := func() {
		if cur != nil {
			s.hold.Store(nil)
			close(cur.released)
			cur = nil
		}
	}
	defer release()
	for {
		sw, changed := s.router.Switchover()
		var wake <-chan time.Time
		if sw != nil && time.Now().Before(sw.Deadline) {
			token := store.SwitchoverToken(sw.RequestedAt)
			if cur == nil || cur.token != token {
				release()
				cur = &hold{token: token, released: make(chan struct{})}
				s.hold.Store(cur)
				s.log.Info("switchover: holding new transactions on the writer endpoint", "from", sw.From, "to", sw.To)
				go s.drain(cur)
			}
			wake = time.After(time.Until(sw.Deadline))
		} else if cur != nil {
			s.log.Info("switchover: over; releasing held work")
			release()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-changed:
		case <-wake:
		}
	}
}

// drain waits for the writer sessions' transactions to finish, then
// acknowledges the hold.
func (s *Server) drain(h *hold) {
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	for {
		busy := s.busyWriterSessions()
		if busy == 0 || time.Now().After(deadline) {
			if busy > 0 {
				s.log.Warn("switchover: drain timed out; open transactions will get a retryable error", "sessions", busy)
			}
			s.setAck(h.token, busy == 0)
			return
		}
		select {
		case <-h.released:
			return
		case <-s.ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// busyWriterSessions counts writer sessions inside a transaction or with
// requests in flight.
func (s *Server) busyWriterSessions() int {
	s.mu.Lock()
	sessions := make([]*relayState, 0, len(s.sessions))
	for ss := range s.sessions {
		if ss.st != nil {
			sessions = append(sessions, ss.st)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, st := range sessions {
		st.mu.Lock()
		if st.txStatus != 'I' || st.pending > 0 || st.unsynced || st.resolved != nil {
			n++
		}
		st.mu.Unlock()
	}
	return n
}

// waitHold holds an idle session's next transaction while a switchover
// is under way, for at most the hold window.
func (ss *session) waitHold() {
	h := ss.s.hold.Load()
	if h == nil {
		return
	}
	ss.s.waiting.Add(1)
	defer ss.s.waiting.Add(-1)
	t := time.NewTimer(ss.s.cfg.HoldWindow)
	defer t.Stop()
	select {
	case <-h.released:
	case <-t.C:
	case <-ss.s.ctx.Done():
	}
}

// setAck publishes the proxy's acknowledgement of a switchover.
func (s *Server) setAck(token string, drained bool) {
	s.mu.Lock()
	s.report.SwitchoverAck, s.report.Drained = token, drained
	s.mu.Unlock()
	select {
	case s.reportNow <- struct{}{}:
	default:
	}
}

// proxyID names this proxy in etcd.
func (s *Server) proxyID() string {
	host, _ := os.Hostname()
	addr := s.Addr("writer")
	if addr == "" {
		addr = s.Addr("reader")
	}
	id := fmt.Sprintf("%s-%s-%d", host, addr, os.Getpid())
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, id)
}

// reportLoop keeps the proxy's report in etcd, attached to a lease: agents
// wait for the acknowledgements of the proxies they can see there.
func (s *Server) reportLoop() {
	st := s.router.st
	if st == nil {
		return
	}
	const ttl = 5 * time.Second
	var lease store.LeaseID
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer func() {
		if lease != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = st.RevokeLease(ctx, lease)
			cancel()
		}
	}()
	var last store.ProxyReport
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		var err error
		if lease == 0 {
			lease, err = st.GrantLease(ctx, ttl)
			last = store.ProxyReport{}
		} else if _, err = st.KeepAliveOnce(ctx, lease); err != nil {
			lease = 0
		}
		if err == nil {
			s.mu.Lock()
			r := s.report
			s.mu.Unlock()
			if r != last {
				if err = st.PutProxy(ctx, r, lease); err == nil {
					last = r
				}
			}
		}
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("proxy report in etcd", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.reportNow:
		}
	}
}
