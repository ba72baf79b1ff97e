package postgres

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// quoteIdent quotes an SQL identifier (role, database). pgx's Sanitize
// doubles embedded double quotes and drops NUL bytes.
func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// quoteLiteral quotes s as an SQL string literal, the way libpq's
// PQescapeLiteral does: single quotes are doubled, and if s holds a
// backslash the literal is written E'...' with backslashes doubled, so the
// result means s whatever standard_conforming_strings is. It exists because
// utility statements (CREATE ROLE ... PASSWORD) cannot take bind parameters.
//
// NUL bytes and invalid UTF-8 are refused: the simple query protocol sends
// the statement as a NUL-terminated string, so a NUL would truncate it, and
// the server would reject invalid UTF-8 in a way that echoes the statement
// (with the password) into its log.
func quoteLiteral(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("string literal contains a NUL byte")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("string literal is not valid UTF-8")
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	if strings.IndexByte(s, '\\') >= 0 {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for k := 0; k < len(s); k++ {
		switch c := s[k]; c {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// quoteConf quotes a value for postgresql.conf. Every value is written as a
// quoted string (the server accepts quoted numbers and booleans). Inside
// quotes the config lexer takes a doubled or backslashed quote for a quote,
// a doubled backslash for a backslash, and does not allow a raw newline, so
// those are escaped.
func quoteConf(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
