package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/proxy/scram"
)

var (
	fuzzUsersOnce sync.Once
	fuzzUsers     StaticUsers
)

// startupPacket encodes a StartupMessage (protocol 3.0) with params.
func startupPacket(params ...string) []byte {
	b := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// FuzzSessionStartup sends arbitrary bytes as a client's first words: the
// startup packet, SSL and GSS requests, cancel requests and the SCRAM
// exchange are decoded from them. The session must end (never hang or
// panic), give back its client slot, and never log in without the
// password.
func FuzzSessionStartup(f *testing.F) {
	f.Add(startupPacket("user", "app", "database", "app"))
	f.Add(append(startupPacket("user", "app"), frame('p', "SCRAM-SHA-256\x00\x00\x00\x00\x20n,,n=,r=abcdefghijklmnopqrstuvwxyzABCDEF")...))
	f.Add(append([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}, startupPacket("user", "app")...)) // SSLRequest first
	f.Add([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30})                                          // GSSENCRequest
	f.Add([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})                 // CancelRequest
	f.Add([]byte{0, 0, 0, 9, 0, 2, 0, 0, 0})                                                   // protocol 2.0
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzUsersOnce.Do(func() {
			v, err := scram.NewVerifier("secret", 4096)
			if err != nil {
				t.Fatal(err)
			}
			fuzzUsers = StaticUsers{"app": {Verifier: v, ServerPassword: "x"}}
		})
		cfg := DefaultConfig()
		cfg.Plaintext = "always" // the pipe has no loopback address
		cfg.StartupTimeout = 5 * time.Second
		cfg.MaxMessageSize = 1 << 16
		s, err := New(cfg, nil, fuzzUsers, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.metrics = newMetrics(s)
		ep := &endpoint{name: "writer", writer: true, m: s.metrics.forEndpoint("writer")}
		server, client := net.Pipe()
		defer server.Close()
		ss := newSession(s, ep, server)
		done := make(chan bool, 1)
		go func() { done <- ss.open() }()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		go func() {
			_, _ = client.Write(data)
			_ = client.Close()
		}()
		select {
		case ok := <-done:
			if ok {
				t.Fatalf("a client logged in without the password: %q", data)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the session did not end after its client left: %q", data)
		}
		if n := ep.clients.Load(); n != 0 {
			t.Fatalf("%d client slots still taken after the session ended", n)
		}
	})
}

// FuzzServerMessageFields reads fields out of arbitrary ErrorResponse and
// DataRow messages, as the relay does with server replies.
func FuzzServerMessageFields(f *testing.F) {
	f.Add(errorResponse("FATAL", "57P01", "terminating connection due to administrator command"))
	f.Add(frame('D', "\x00\x01\x00\x00\x00\x03123"))
	f.Add(frame('D', "\x00\x01\xff\xff\xff\xff"))
	f.Add([]byte{'E', 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) < 5 {
			return
		}
		_ = isFatal(msg)
		_ = errorMessage(msg)
		_ = errorCode(msg)
		if v := dataRowFirst(msg); len(v) > len(msg) {
			t.Fatalf("a field longer than its message: %d > %d", len(v), len(msg))
		}
		if bytes.Contains(msg, []byte{0}) {
			_ = sqlText(msg[5:])
		}
	})
}
