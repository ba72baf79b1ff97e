package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
)

func readyForQuery(status byte) []byte { return []byte{'Z', 0, 0, 0, 5, status} }

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return ""
}

// errorFields parses an ErrorResponse body.
func errorFields(msg []byte) map[byte]string {
	out := map[byte]string{}
	b := msg[5:]
	for len(b) > 1 && b[0] != 0 {
		f := b[0]
		i := bytes.IndexByte(b[1:], 0)
		if i < 0 {
			break
		}
		out[f] = string(b[1 : 1+i])
		b = b[2+i:]
	}
	return out
}

func isFatal(msg []byte) bool {
	f := errorFields(msg)
	sev := f['V']
	if sev == "" {
		sev = f['S']
	}
	return sev == "FATAL" || sev == "PANIC"
}

func errorMessage(msg []byte) string {
	f := errorFields(msg)
	return f['C'] + ": " + f['M']
}

// quiet maps the errors of a connection closed at either end to nil.
func quiet(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// pickReader chooses the qualifying replica with the fewest sessions.
func (s *Server) pickReader() (Target, bool) {
	rs := s.router.Readers()
	if len(rs) == 0 {
		return Target{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	best := rs[0]
	for _, r := range rs[1:] {
		if s.readerLoad[r.Name] < s.readerLoad[best.Name] {
			best = r
		}
	}
	return best, true
}

// xidProbe asks for the current transaction's id ("NULL" if it has none: it
// wrote nothing) and when the server's postmaster started (Unix
// microseconds), as "<xid> <started>": see resolveCommit.
var xidProbe = simpleQuery("SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'NULL') || ' ' || " + startedUSExpr)

// startedUSExpr is pg_postmaster_start_time() in Unix microseconds, as text.
const startedUSExpr = "((extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint)::text"

// dataRowFirst returns the first column of a DataRow as text ("" if NULL).
func dataRowFirst(msg []byte) string {
	if len(msg) < 11 || int(msg[5])<<8|int(msg[6]) < 1 {
		return ""
	}
	n := int(int32(uint32(msg[7])<<24 | uint32(msg[8])<<16 | uint32(msg[9])<<8 | uint32(msg[10])))
	if n < 0 || 11+n > len(msg) {
		return ""
	}
	return string(msg[11 : 11+n])
}

func commandComplete(tag string) []byte {
	b := []byte{'C', 0, 0, 0, byte(4 + len(tag) + 1)}
	b = append(b, tag...)
	return append(b, 0)
}

// closeStmt encodes Close of a prepared statement.
func closeStmt(name string) []byte {
	b := make([]byte, 6, 7+len(name))
	b[0], b[5] = 'C', 'S'
	b = append(append(b, name...), 0)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-1))
	return b
}

// parseMsg encodes Parse of a named statement; body is what follows the
// name in the client's Parse (query, parameter types).
func parseMsg(name, body string) []byte {
	b := make([]byte, 5, 6+len(name)+len(body))
	b[0] = 'P'
	b = append(append(append(b, name...), 0), body...)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-1))
	return b
}

// simpleQuery encodes a Query message.
func simpleQuery(sql string) []byte {
	b := make([]byte, 5, 6+len(sql))
	b[0] = 'Q'
	b = append(append(b, sql...), 0)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-1))
	return b
}

// splitCString splits b after its first NUL: the string and the rest.
func splitCString(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil
	}
	return string(b[:i]), b[i+1:]
}

// dropsPrepared reports whether SQL text may deallocate protocol-level
// prepared statements (DEALLOCATE, DISCARD).
func dropsPrepared(body []byte) bool {
	return dropWords.in(body)
}
