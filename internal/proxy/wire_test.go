package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func frame(t byte, body string) []byte {
	b := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

func TestMsgReader(t *testing.T) {
	in := append(frame('Q', "select 1\x00"), frame('X', "")...)
	r := newMsgReader(bytes.NewReader(in), 1024)
	m, err := r.next()
	if err != nil || m[0] != 'Q' || string(m[5:]) != "select 1\x00" {
		t.Fatalf("first: %q %v", m, err)
	}
	m, err = r.next()
	if err != nil || m[0] != 'X' || len(m) != 5 {
		t.Fatalf("second: %q %v", m, err)
	}
	if _, err := r.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	for _, tt := range []struct {
		name string
		in   []byte
		want error
	}{
		{"too large", frame('Q', string(make([]byte, 2000))), ErrMessageTooLarge},
		{"truncated body", frame('Q', "select")[:8], io.ErrUnexpectedEOF},
		{"truncated header", []byte{'Q', 0, 0}, io.ErrUnexpectedEOF},
	} {
		_, err := newMsgReader(bytes.NewReader(tt.in), 1024).next()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	bad := []byte{'Q', 0, 0, 0, 2}
	if _, err := newMsgReader(bytes.NewReader(bad), 1024).next(); err == nil {
		t.Error("length below 4 accepted")
	}
}

// FuzzMsgReader: client bytes are untrusted; framing never panics, never
// returns a message over the limit, and every message it returns is whole.
func FuzzMsgReader(f *testing.F) {
	f.Add(append(frame('Q', "select 1\x00"), frame('X', "")...))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'P', 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newMsgReader(bytes.NewReader(in), 4096)
		for i := 0; i < 1000; i++ {
			m, err := r.next()
			if err != nil {
				return
			}
			if len(m) > 4097 || len(m) < 5 || int(binary.BigEndian.Uint32(m[1:5]))+1 != len(m) {
				t.Fatalf("bad frame of %d bytes", len(m))
			}
		}
	})
}

func TestErrorResponse(t *testing.T) {
	b := errorResponse("FATAL", "08P01", "bad")
	if b[0] != 'E' || int(binary.BigEndian.Uint32(b[1:5]))+1 != len(b) || !bytes.Contains(b, []byte("C08P01\x00")) || b[len(b)-1] != 0 {
		t.Fatalf("malformed ErrorResponse %q", b)
	}
}

// TestMsgReaderEndIsFinal: once a read has failed with anything but a
// deadline, every later read returns that error without reading again,
// whatever deadline is set meanwhile. Go checks an expired deadline before
// the read system call, so without this a parked session whose client had
// closed its connection read the EOF once, re-armed its (past) idle
// deadline, never saw the EOF again and parked again, for ever (issue 17).
func TestMsgReaderEndIsFinal(t *testing.T) {
	for _, tt := range []struct {
		name  string
		leave func(c net.Conn)
		want  error
	}{
		{"FIN", func(c net.Conn) { _ = c.Close() }, io.EOF},
		{"half-close", func(c net.Conn) { _ = c.(*net.TCPConn).CloseWrite() }, io.EOF},
		{"RST", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); _ = c.Close() }, syscall.ECONNRESET},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, proxySide := tcpPair(t)
			in := newMsgReader(fastIO(proxySide), 1024)
			// A whole message, then the client leaves: the message is
			// still served, then the end.
			if _, err := client.Write(frame('Q', "select 1\x00")); err != nil {
				t.Fatal(err)
			}
			if m, err := in.next(); err != nil || m[0] != 'Q' {
				t.Fatalf("next = %q, %v", m, err)
			}
			tt.leave(client)
			if err := in.wait(); !errors.Is(err, tt.want) {
				t.Fatalf("wait = %v, want %v", err, tt.want)
			}
			// What the relay does next: arm an idle deadline that has
			// already passed, and read.
			_ = proxySide.SetReadDeadline(time.Now().Add(-time.Second))
			for i := 0; i < 3; i++ {
				if _, err := in.next(); !errors.Is(err, tt.want) {
					t.Fatalf("next after the end, past deadline: %v, want %v", err, tt.want)
				}
				if err := in.wait(); !errors.Is(err, tt.want) {
					t.Fatalf("wait after the end, past deadline: %v, want %v", err, tt.want)
				}
			}
		})
	}
	// A deadline is not an end: what arrives afterwards is read.
	client, proxySide := tcpPair(t)
	in := newMsgReader(fastIO(proxySide), 1024)
	_ = proxySide.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := in.next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("next past the deadline: %v", err)
	}
	_ = proxySide.SetReadDeadline(time.Time{})
	if _, err := client.Write(frame('X', "")); err != nil {
		t.Fatal(err)
	}
	if m, err := in.next(); err != nil || m[0] != 'X' {
		t.Fatalf("next after a deadline: %q, %v", m, err)
	}
}
