// Package lsn is PostgreSQL's write-ahead log position, the one type every
// package uses for it (cluster.LSN and postgres.LSN are this type).
package lsn

import (
	"encoding/json"
	"fmt"
)

// LSN is a PostgreSQL write-ahead log position. It is encoded, in JSON and
// as text, in PostgreSQL's own form ("0/3000148"), so that what holdfast
// prints can be pasted into SQL.
type LSN uint64

// Parse parses PostgreSQL's text form "X/Y": two hexadecimal numbers of one
// to eight digits, as pg_lsn_in accepts them.
func Parse(s string) (LSN, error) {
	var v [2]uint64
	part, digits := 0, 0
	for k := 0; k < len(s); k++ {
		c := s[k]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		case c == '/' && part == 0 && digits > 0:
			part, digits = 1, 0
			continue
		default:
			return 0, fmt.Errorf("invalid LSN %q: want two hexadecimal numbers of at most 8 digits separated by '/'", s)
		}
		if digits == 8 {
			return 0, fmt.Errorf("invalid LSN %q: more than 8 hex digits", s)
		}
		v[part] = v[part]<<4 | d
		digits++
	}
	if part != 1 || digits == 0 {
		return 0, fmt.Errorf("invalid LSN %q: want two hexadecimal numbers of at most 8 digits separated by '/'", s)
	}
	return LSN(v[0]<<32 | v[1]), nil
}

// String returns PostgreSQL's text form, e.g. "0/3000148".
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// MarshalText encodes the LSN in PostgreSQL's text form.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses PostgreSQL's text form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// UnmarshalJSON accepts PostgreSQL's text form, or a plain number (as
// agents older than the text form published).
func (l *LSN) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n uint64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("invalid LSN %s", b)
		}
		*l = LSN(n)
		return nil
	}
	return l.UnmarshalText([]byte(s))
}
