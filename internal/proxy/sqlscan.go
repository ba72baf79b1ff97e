package proxy

import (
	"bytes"
)

// The relay looks at the SQL of every simple Query (and Parse) to know
// whether it may commit, ends a transaction block or leaves session state
// behind. These helpers do it without allocating: they look at a
// normalised head of each statement (comments removed, whitespace runs
// folded to one space, ASCII upper case), and fall back to the slower full
// normalisation only when the text mentions one of the few words that need
// more than a head to decide.

// sqlText is the SQL of a Query or Parse body: the bytes before the NUL.
func sqlText(body []byte) []byte {
	if i := bytes.IndexByte(body, 0); i >= 0 {
		return body[:i]
	}
	return nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// sqlHead appends to dst (up to its capacity) the head of statement s:
// comments dropped (replaced by a space, as stripComments does), runs of
// whitespace folded to one space, no leading or trailing space, ASCII upper
// case.
func sqlHead(dst, s []byte) []byte {
	space := false
	for i := 0; i < len(s) && len(dst) < cap(dst); i++ {
		c := s[i]
		switch {
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := bytes.IndexByte(s[i:], '\n')
			if j < 0 {
				return dst
			}
			i += j
			space = true
			continue
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := bytes.Index(s[i+2:], []byte("*/"))
			if j < 0 {
				return dst
			}
			i += j + 3
			space = true
			continue
		case isSpace(c):
			space = true
			continue
		}
		if space && len(dst) > 0 {
			dst = append(dst, ' ')
			if len(dst) == cap(dst) {
				return dst
			}
		}
		space = false
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// createsSessionState reports whether SQL text may leave state on the
// server connection that outlives the transaction: a session that has some
// cannot be moved to another server without the client noticing. It errs on
// the side of "yes".
func createsSessionState(sql []byte) bool {
	if stateWords.in(sql) {
		// Decided by words anywhere in a statement.
		return createsSessionStateText(string(sql))
	}
	var buf [24]byte
	for rest := sql; len(rest) > 0; {
		stmt := rest
		if i := bytes.IndexByte(rest, ';'); i >= 0 {
			stmt, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		h := sqlHead(buf[:0], stmt)
		switch {
		case hasPrefix(h, "SET "):
			if !hasPrefix(h, "SET LOCAL ") && !hasPrefix(h, "SET TRANSACTION ") && !hasPrefix(h, "SET CONSTRAINTS ") {
				return true
			}
		case hasPrefix(h, "LISTEN "), hasPrefix(h, "PREPARE "), hasPrefix(h, "LOAD "):
			return true
		}
	}
	return false
}

// firstHead is the head of a simple Query's text, for the checks below.
func firstHead(buf []byte, body []byte) []byte { return sqlHead(buf, sqlText(body)) }

// isCommit reports whether a simple Query starts with COMMIT or END.
func isCommit(body []byte) bool {
	var buf [8]byte
	h := firstHead(buf[:0], body)
	return hasPrefix(h, "COMMIT") || hasPrefix(h, "END")
}

// cannotCommit reports whether a simple Query run outside a transaction
// block certainly commits nothing (so losing it in flight is retryable).
func cannotCommit(body []byte) bool {
	q := bytes.TrimRight(sqlText(body), "; \t\n\r\v\f")
	if bytes.IndexByte(q, ';') >= 0 {
		return false // several statements: one of them may commit
	}
	var buf [24]byte
	h := sqlHead(buf[:0], q)
	for _, p := range []string{"BEGIN", "START TRANSACTION", "ROLLBACK", "ABORT", "SHOW "} {
		if hasPrefix(h, p) {
			return true
		}
	}
	return len(h) == 0
}

// endsTransaction reports whether a simple Query ends a transaction block.
func endsTransaction(body []byte) bool {
	var buf [8]byte
	h := firstHead(buf[:0], body)
	for _, p := range []string{"ROLLBACK", "ABORT", "COMMIT", "END"} {
		if hasPrefix(h, p) {
			return true
		}
	}
	return false
}

// wordSet finds any of a few upper-case ASCII words in text, ignoring
// case, in one pass.
type wordSet struct {
	byFirst [256][]string
}

func newWordSet(words ...string) *wordSet {
	ws := &wordSet{}
	for _, w := range words {
		ws.byFirst[w[0]] = append(ws.byFirst[w[0]], w)
		ws.byFirst[w[0]|0x20] = ws.byFirst[w[0]]
	}
	return ws
}

func (ws *wordSet) in(b []byte) bool {
	for i, c := range b {
		for _, w := range ws.byFirst[c] {
			if len(b)-i >= len(w) && equalFoldUpper(b[i:i+len(w)], w) {
				return true
			}
		}
	}
	return false
}

var (
	// stateWords: createsSessionState needs the whole statement to decide.
	stateWords = newWordSet("ADVISORY", "SET_CONFIG", "TEMP", "HOLD")
	// dropWords: SQL that may deallocate protocol-level prepared statements.
	dropWords = newWordSet("DEALLOCATE", "DISCARD")
)

func equalFoldUpper(b []byte, upper string) bool {
	for j := range len(upper) {
		c := b[j]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[j] {
			return false
		}
	}
	return true
}
