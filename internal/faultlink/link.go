// Package faultlink is a TCP forwarder that can be cut: the network between
// a member and the rest of the deployment, made controllable so that a
// drill can partition the member for real.
//
// A cut is a black hole, not a reset: bytes stop flowing both ways and new
// connections are accepted but get no answer, as when packets are dropped.
// Peers notice only through their own timeouts and keepalives, which is
// what a partition tests. Healing lets the held bytes through again, as TCP
// retransmission would.
//
// A one-way cut holds the bytes of one direction only (the target's
// answers, or what is sent to it), as a one-way partition does to a TCP
// connection's data (its acknowledgements are the forwarder's own, so the
// senders' buffers fill as they would); new connections wait for the heal,
// since a handshake needs both ways. A slowed link delays every chunk of
// bytes by a fixed latency in each direction, without limiting how many
// are in flight.
package faultlink

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Direction is one way through a link.
type Direction int

const (
	// ToTarget is what clients send to the target.
	ToTarget Direction = iota
	// FromTarget is what the target sends back to its clients.
	FromTarget
)

func (d Direction) String() string {
	if d == ToTarget {
		return "to target"
	}
	return "from target"
}

// Link forwards every connection accepted on its listener to Target.
type Link struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	blocked [2]bool       // by Direction
	delay   time.Duration // added to every chunk, each way
	changed chan struct{} // closed (and replaced) at every change of state
	// conns are both ends of every forwarded connection, by the direction
	// each is read for (a client's end carries ToTarget).
	conns  map[net.Conn]Direction
	closed bool

	wg sync.WaitGroup
}

// Listen starts a link on addr (host:port; port 0 picks one) to target.
func Listen(addr, target string) (*Link, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Link{ln: ln, target: target, changed: make(chan struct{}), conns: map[net.Conn]Direction{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address clients connect to.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target is the address the link forwards to.
func (l *Link) Target() string { return l.target }

// IsCut reports whether the link is cut, either way.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.blocked[ToTarget] || l.blocked[FromTarget]
}

// Delay is the latency a slowed link adds (0: none).
func (l *Link) Delay() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.delay
}

// Cut stops all traffic through the link until Heal.
func (l *Link) Cut() { l.set(func() { l.blocked = [2]bool{true, true} }) }

// CutOneWay holds the bytes going direction d until Heal; the other
// direction flows on.
func (l *Link) CutOneWay(d Direction) { l.set(func() { l.blocked[d] = true }) }

// Slow adds latency d to every chunk of bytes, each way, until Heal.
func (l *Link) Slow(d time.Duration) { l.set(func() { l.delay = max(d, 0) }) }

// Heal lets traffic through again, at full speed, including what was held.
func (l *Link) Heal() { l.set(func() { l.blocked, l.delay = [2]bool{}, 0 }) }

// set changes the link's state and makes every copy loop look at it again:
// each is either reading (the past deadline makes its read fail, and it
// goes back to wait) or about to look at the state under mu.
func (l *Link) set(change func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	before := [2]bool(l.blocked)
	delay := l.delay
	change()
	if l.blocked == before && l.delay == delay {
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
	past := time.Unix(1, 0)
	for c := range l.conns {
		_ = c.SetReadDeadline(past)
	}
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
	close(l.changed)
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

// wait waits until bytes may go direction d through c (or the link is
// closed: false), clears c's read deadline atomically with respect to
// set, and returns the latency to add.
func (l *Link) wait(c net.Conn, d Direction) (time.Duration, bool) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return 0, false
		}
		if !l.blocked[d] {
			_ = c.SetReadDeadline(time.Time{})
			delay := l.delay
			l.mu.Unlock()
			return delay, true
		}
		changed := l.changed
		l.mu.Unlock()
		<-changed
	}
}

// waitWhole waits until the link is cut neither way (a handshake needs
// both); false if it is closed.
func (l *Link) waitWhole() bool {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return false
		}
		if !l.blocked[ToTarget] && !l.blocked[FromTarget] {
			l.mu.Unlock()
			return true
		}
		changed := l.changed
		l.mu.Unlock()
		<-changed
	}
}

func (l *Link) track(c net.Conn, d Direction) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = d
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
	if !l.track(client, ToTarget) {
		_ = client.Close()
		return
	}
	// A connection arriving during a cut gets no answer until the heal, as
	// a SYN that is dropped (the client's connect timeout decides).
	if !l.waitWhole() {
		l.untrack(client)
		return
	}
	server, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		l.untrack(client)
		return
	}
	if !l.track(server, FromTarget) {
		l.untrack(client, server)
		return
	}
	done := make(chan struct{}, 2)
	go func() { l.pipe(server, client, ToTarget); done <- struct{}{} }()
	go func() { l.pipe(client, server, FromTarget); done <- struct{}{} }()
	<-done
	// One direction ended (EOF after a half close, or an error): the other
	// ends when its peer closes; an error closes both at once.
	<-done
	l.untrack(client, server)
}

// pipe copies src to dst (direction d), holding the bytes while that
// direction is cut and delaying them while the link is slowed.
func (l *Link) pipe(dst, src net.Conn, d Direction) {
	for {
		delay, ok := l.wait(src, d)
		if !ok {
			return
		}
		var err error
		if delay > 0 {
			err = copyDelayed(dst, src, delay)
		} else {
			_, err = io.Copy(dst, src)
		}
		if err == nil {
			// EOF: pass the half close on.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // the state changed: look again
		}
		_ = dst.Close()
		_ = src.Close()
		return
	}
}

// delayedChunks bounds the chunks in flight on a slowed direction.
const delayedChunks = 256

// copyDelayed copies src to dst, each chunk written delay after it was
// read, until src fails (nil at EOF, as io.Copy). Chunks read before the
// failure are still delivered: they were on the wire.
func copyDelayed(dst, src net.Conn, delay time.Duration) error {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, delayedChunks)
	readErr := make(chan error, 1)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var writeErr error
	for c := range q {
		if writeErr != nil {
			continue // the reader ends: src was closed
		}
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			writeErr = err
			_ = src.Close()
		}
	}
	if writeErr != nil {
		return writeErr
	}
	if err := <-readErr; !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
