package faultlink

import (
	"bufio"
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
