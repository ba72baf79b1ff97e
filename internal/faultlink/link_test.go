package faultlink

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"
)

// echo serves lines back until the connection closes.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and reads the answer within wait; ok is false when
// nothing came back.
func (c *client) roundTrip(t *testing.T, line string, wait time.Duration) (string, bool) {
	t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	return c.read(wait)
}

func (c *client) read(wait time.Duration) (string, bool) {
	_ = c.c.SetReadDeadline(time.Now().Add(wait))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", false
	}
	return s[:len(s)-1], true
}

func TestCutAndHeal(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old := dial(t, l.Addr())
	if got, ok := old.roundTrip(t, "one", 5*time.Second); !ok || got != "one" {
		t.Fatalf("through the whole link: %q %v", got, ok)
	}

	l.Cut()
	if !l.IsCut() {
		t.Fatal("IsCut is false after Cut")
	}
	// Nothing passes on an existing connection, and a new one is accepted
	// but gets no answer.
	if got, ok := old.roundTrip(t, "two", 300*time.Millisecond); ok {
		t.Fatalf("an answer came through a cut link: %q", got)
	}
	fresh := dial(t, l.Addr())
	if got, ok := fresh.roundTrip(t, "three", 300*time.Millisecond); ok {
		t.Fatalf("a new connection was answered through a cut link: %q", got)
	}

	// Healing delivers what was held, in order, and traffic flows again.
	l.Heal()
	if got, ok := old.read(5 * time.Second); !ok || got != "two" {
		t.Fatalf("held bytes after heal: %q %v", got, ok)
	}
	if got, ok := fresh.read(5 * time.Second); !ok || got != "three" {
		t.Fatalf("held connection after heal: %q %v", got, ok)
	}
	if got, ok := old.roundTrip(t, "four", 5*time.Second); !ok || got != "four" {
		t.Fatalf("after heal: %q %v", got, ok)
	}

	// A second cycle works the same way.
	l.Cut()
	if _, ok := old.roundTrip(t, "five", 200*time.Millisecond); ok {
		t.Fatal("an answer came through the second cut")
	}
	l.Heal()
	if got, ok := old.read(5 * time.Second); !ok || got != "five" {
		t.Fatalf("second heal: %q %v", got, ok)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, l.Addr())
	if _, ok := c.roundTrip(t, "x", 5*time.Second); !ok {
		t.Fatal("no answer")
	}
	l.Cut()
	done := make(chan struct{})
	go func() { _ = l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a cut link")
	}
	if _, ok := c.read(5 * time.Second); ok {
		t.Fatal("read succeeded after Close")
	}
	if _, err := net.DialTimeout("tcp", l.Addr(), time.Second); err == nil {
		t.Fatal("the listener still accepts after Close")
	}
}

func TestHalfCloseIsForwarded(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l.Addr())
	if _, err := c.c.Write([]byte("last\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.c.(*net.TCPConn).CloseWrite()
	if got, ok := c.read(5 * time.Second); !ok || got != "last" {
		t.Fatalf("answer after half close: %q %v", got, ok)
	}
	// The echo server sees EOF and closes: so must the client.
	if _, ok := c.read(5 * time.Second); ok {
		t.Fatal("connection not closed after the server closed")
	}
}

// recorder is a server that reports each line it receives, answers it,
// and hands the test each connection it accepts (to send unasked).
type recorder struct {
	got   chan string
	conns chan net.Conn
}

func newRecorder(t *testing.T) (*recorder, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	r := &recorder{got: make(chan string, 100), conns: make(chan net.Conn, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns <- c
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					r.got <- line[:len(line)-1]
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return r, ln.Addr().String()
}

func (r *recorder) receives(t *testing.T, want string, wait time.Duration) bool {
	t.Helper()
	select {
	case got := <-r.got:
		if got != want {
			t.Fatalf("server received %q, want %q", got, want)
		}
		return true
	case <-time.After(wait):
		return false
	}
}

func TestOneWayCuts(t *testing.T) {
	rec, addr := newRecorder(t)
	l, err := Listen("127.0.0.1:0", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l.Addr())
	if got, ok := c.roundTrip(t, "zero", 5*time.Second); !ok || got != "zero" {
		t.Fatalf("through the whole link: %q %v", got, ok)
	}
	rec.receives(t, "zero", time.Second)
	server := <-rec.conns

	// The target's answers held: what is sent reaches it, nothing comes back.
	l.CutOneWay(FromTarget)
	if !l.IsCut() {
		t.Fatal("IsCut is false after a one-way cut")
	}
	if got, ok := c.roundTrip(t, "one", 300*time.Millisecond); ok {
		t.Fatalf("an answer came back through a link cut from the target: %q", got)
	}
	if !rec.receives(t, "one", 5*time.Second) {
		t.Fatal("the target did not receive what was sent towards it")
	}
	// A new connection waits for the heal: a handshake needs both ways.
	fresh := dial(t, l.Addr())
	if got, ok := fresh.roundTrip(t, "fresh", 300*time.Millisecond); ok {
		t.Fatalf("a new connection was answered through a one-way cut: %q", got)
	}
	if rec.receives(t, "fresh", 200*time.Millisecond) {
		t.Fatal("a new connection reached the target through a one-way cut")
	}
	l.Heal()
	if got, ok := c.read(5 * time.Second); !ok || got != "one" {
		t.Fatalf("held answer after heal: %q %v", got, ok)
	}
	if got, ok := fresh.read(5 * time.Second); !ok || got != "fresh" {
		t.Fatalf("held connection after heal: %q %v", got, ok)
	}
	rec.receives(t, "fresh", 5*time.Second)
	<-rec.conns

	// What is sent to the target held: the target's own bytes come through.
	l.CutOneWay(ToTarget)
	if _, err := c.c.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if rec.receives(t, "two", 300*time.Millisecond) {
		t.Fatal("the target received bytes through a link cut towards it")
	}
	if _, err := server.Write([]byte("push\n")); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.read(5 * time.Second); !ok || got != "push" {
		t.Fatalf("the target's own bytes through a link cut towards it: %q %v", got, ok)
	}
	l.Heal()
	if !rec.receives(t, "two", 5*time.Second) {
		t.Fatal("held bytes not delivered after heal")
	}
	if got, ok := c.read(5 * time.Second); !ok || got != "two" {
		t.Fatalf("answer after heal: %q %v", got, ok)
	}
}

func TestSlowLink(t *testing.T) {
	l, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l.Addr())
	if _, ok := c.roundTrip(t, "warm", 5*time.Second); !ok {
		t.Fatal("no answer")
	}
	const delay = 150 * time.Millisecond
	l.Slow(delay)
	if l.Delay() != delay || l.IsCut() {
		t.Fatalf("Delay %s IsCut %v after Slow(%s)", l.Delay(), l.IsCut(), delay)
	}
	// Each way is delayed: a round trip takes at least twice the delay.
	for i, line := range []string{"a", "b"} {
		start := time.Now()
		got, ok := c.roundTrip(t, line, 10*time.Second)
		if !ok || got != line {
			t.Fatalf("round trip %d through a slowed link: %q %v", i, got, ok)
		}
		if d := time.Since(start); d < 2*delay {
			t.Fatalf("round trip %d took %s through a link slowed by %s each way", i, d, delay)
		}
	}
	// Bytes in flight are not limited: many lines sent at once all come
	// back, in order.
	for i := range 50 {
		if _, err := fmt.Fprintf(c.c, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if got, ok := c.read(10 * time.Second); !ok || got != fmt.Sprintf("line %d", i) {
			t.Fatalf("pipelined line %d: %q %v", i, got, ok)
		}
	}
	// A cut on a slowed link holds, and the heal restores full speed.
	l.Cut()
	if _, ok := c.roundTrip(t, "held", 2*delay+300*time.Millisecond); ok {
		t.Fatal("an answer came through a cut (slowed) link")
	}
	l.Heal()
	if l.Delay() != 0 {
		t.Fatalf("Delay %s after Heal", l.Delay())
	}
	if got, ok := c.read(5 * time.Second); !ok || got != "held" {
		t.Fatalf("held bytes after heal: %q %v", got, ok)
	}
	if got, ok := c.roundTrip(t, "fast", 5*time.Second); !ok || got != "fast" {
		t.Fatalf("after heal: %q %v", got, ok)
	}
}
