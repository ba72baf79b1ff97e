package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSockIO(t *testing.T) {
	a, b := tcpPair(t)
	ra, ok := fastIO(a).(*sockIO)
	if !ok {
		t.Fatalf("fastIO(%T) is not raw", a)
	}
	rb := fastIO(b).(*sockIO)

	if !rb.quiet() {
		t.Fatal("quiet() = false on a connection nobody wrote to")
	}
	// A write larger than the socket buffers completes as the reader drains.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ra.Write(big)
		errc <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(rb, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != big[i] {
			t.Fatalf("byte %d differs", i)
		}
	}

	// Pending data: not quiet, and nothing is consumed by looking.
	if _, err := ra.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rb.quiet() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if rb.quiet() {
		t.Fatal("quiet() = true with a byte pending")
	}
	one := make([]byte, 4)
	if n, err := rb.Read(one); err != nil || n != 1 || one[0] != 'x' {
		t.Fatalf("Read = %d %v %q, want the pending byte", n, err, one[:n])
	}

	// Deadlines still apply.
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rb.Read(one); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want ErrDeadlineExceeded", err)
	}
	_ = b.SetReadDeadline(time.Time{})

	// The peer closing: not quiet, and Read reports EOF.
	a.Close()
	for rb.quiet() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if rb.quiet() {
		t.Fatal("quiet() = true after the peer closed")
	}
	if _, err := rb.Read(one); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after close: %v, want EOF", err)
	}
	// Our own Close: net.ErrClosed, as net.Conn says.
	b.Close()
	if _, err := rb.Read(one); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := rb.Write(one); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}
