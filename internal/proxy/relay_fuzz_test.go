package proxy

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzTrackMessages feeds arbitrary client message streams to the relay's
// bookkeeping (trackLocked, ensureLocked), which reads names and SQL out of
// untrusted Parse, Bind, Describe, Close and Query bodies. It must not
// panic, must only inject well-formed messages, and must leave the server
// holding the client's own version of any named statement a Bind or
// Describe is about to use, though two clients take turns on it (as in
// transaction pooling) with statements of the same names.
func FuzzTrackMessages(f *testing.F) {
	f.Add(bytes.Join([][]byte{
		frame('P', "s1\x00SELECT $1\x00\x00\x00"),
		frame('B', "\x00s1\x00\x00\x00\x00\x00\x00\x00"),
		frame('E', "\x00\x00\x00\x00\x00"),
		frame('S', ""),
	}, nil))
	f.Add(bytes.Join([][]byte{
		frame('Q', "BEGIN\x00"),
		frame('Q', "SET x = 1\x00"),
		frame('Q', "COMMIT\x00"),
		frame('C', "Ss1\x00"),
		frame('D', "Ss1\x00"),
		frame('Q', "DEALLOCATE ALL\x00"),
	}, nil))
	f.Add(bytes.Join([][]byte{
		frame('P', "a\x00SELECT 1\x00\x00\x00"),
		frame('S', ""), // odd length (5): the other client's turn
		frame('P', "a\x00SELECT 2\x00\x00\x00"),
		frame('S', ""),
		frame('B', "\x00a\x00\x00\x00\x00\x00\x00\x00"),
	}, nil))
	f.Add([]byte{'B', 0, 0, 0, 4})
	f.Add([]byte{'P', 0, 0, 0, 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{cfg: Config{ResolveCommits: true, PoolMode: PoolTransaction}}
		s.metrics = newMetrics(s)
		ss := &session{s: s, ep: &endpoint{name: "writer", writer: true, m: s.metrics.forEndpoint("writer")}}
		sts := [2]*relayState{{txStatus: 'I'}, {txStatus: 'I'}}
		cur := 0
		sc := &serverConn{prepared: map[string]string{}}
		in := newMsgReader(bytes.NewReader(data), 1<<20)
		for range 200 {
			msg, err := in.next()
			if err != nil {
				return
			}
			st := sts[cur]
			pre := ss.trackLocked(st, sc, msg)
			for _, m := range pre {
				if len(m) < 5 || int(binary.BigEndian.Uint32(m[1:5]))+1 != len(m) {
					t.Fatalf("injected a malformed message %q", m)
				}
				if !bytes.ContainsRune([]byte("CPQ"), rune(m[0])) {
					t.Fatalf("injected message type %q", m[0])
				}
			}
			for _, e := range sc.expect {
				if e.reply != '1' && e.reply != '3' {
					t.Fatalf("expects reply %q", e.reply)
				}
			}
			var name string
			switch {
			case msg[0] == 'B':
				_, rest := splitCString(msg[5:])
				name = cstring(rest)
			case msg[0] == 'D' && len(msg) > 6 && msg[5] == 'S':
				name = cstring(msg[6:])
			}
			if body, mine := st.stmts[name]; name != "" && mine && sc.prepared[name] != body {
				t.Fatalf("before using statement %q the server has %q, the client prepared %q", name, sc.prepared[name], body)
			}
			if msg[0] == 'S' || msg[0] == 'Q' {
				// The server answers: the sync point is done.
				sc.expect = sc.expect[:0]
				st.pending, st.unsynced, st.probing = 0, false, false
				// The server goes to the other client after some
				// transactions (chosen by the input).
				cur ^= len(msg) & 1
			}
		}
	})
}
