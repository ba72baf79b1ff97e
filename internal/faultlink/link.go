// Package faultlink is a TCP forwarder that can be cut: the network between
// a member and the rest of the deployment, made controllable so that a
// drill can partition the member for real.
//
// A cut is a black hole, not a reset: bytes stop flowing both ways and new
// connections are accepted but get no answer, as when packets are dropped.
// Peers notice only through their own timeouts and keepalives, which is
// what a partition tests. Healing lets the held bytes through again, as TCP
// retransmission would.
package faultlink

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Link forwards every connection accepted on its listener to Target.
type Link struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	healed chan struct{}         // closed while the link is whole; replaced on Cut
	conns  map[net.Conn]struct{} // both ends of every forwarded connection
	closed bool

	wg sync.WaitGroup
}

// Listen starts a link on addr (host:port; port 0 picks one) to target.
func Listen(addr, target string) (*Link, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Link{ln: ln, target: target, healed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(l.healed)
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address clients connect to.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target is the address the link forwards to.
func (l *Link) Target() string { return l.target }

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// Cut stops all traffic through the link until Heal.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut || l.closed {
		return
	}
	l.cut = true
	l.healed = make(chan struct{})
	// Every copy loop is either in io.Copy (the deadline makes its read fail
	// and it goes back to waiting) or about to check the state under mu.
	past := time.Unix(1, 0)
	for c := range l.conns {
		_ = c.SetReadDeadline(past)
	}
}

// Heal lets traffic through again, including what was held.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return
	}
	l.cut = false
	close(l.healed)
}

// Close stops the listener and closes every forwarded connection.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.ln.Close()
	for c := range l.conns {
		_ = c.Close()
	}
	if l.cut {
		l.cut = false
		close(l.healed)
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.serve(c) }()
	}
}

// open waits until the link is whole (or closed, false) and clears c's read
// deadline, atomically with respect to Cut.
func (l *Link) open(c net.Conn) bool {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return false
		}
		if !l.cut {
			_ = c.SetReadDeadline(time.Time{})
			l.mu.Unlock()
			return true
		}
		healed := l.healed
		l.mu.Unlock()
		<-healed
	}
}

func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	if l.cut {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	return true
}

func (l *Link) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
		_ = c.Close()
	}
}

func (l *Link) serve(client net.Conn) {
	if !l.track(client) {
		_ = client.Close()
		return
	}
	// A connection arriving during a cut gets no answer until the heal, as
	// a SYN that is dropped (the client's connect timeout decides).
	if !l.open(client) {
		l.untrack(client)
		return
	}
	server, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		l.untrack(client)
		return
	}
	if !l.track(server) {
		l.untrack(client, server)
		return
	}
	done := make(chan struct{}, 2)
	go func() { l.pipe(server, client); done <- struct{}{} }()
	go func() { l.pipe(client, server); done <- struct{}{} }()
	<-done
	// One direction ended (EOF after a half close, or an error): the other
	// ends when its peer closes; an error closes both at once.
	<-done
	l.untrack(client, server)
}

// pipe copies src to dst, pausing while the link is cut.
func (l *Link) pipe(dst, src net.Conn) {
	for {
		if !l.open(src) {
			return
		}
		_, err := io.Copy(dst, src)
		if err == nil {
			// EOF: pass the half close on.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // cut: wait for the heal
		}
		_ = dst.Close()
		_ = src.Close()
		return
	}
}
