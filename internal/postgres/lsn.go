package postgres

import (
	"fmt"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// ParseLSN parses PostgreSQL's text form "X/Y": two hexadecimal numbers of
// one to eight digits, as pg_lsn_in accepts them.
func ParseLSN(s string) (LSN, error) {
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
			return 0, fmt.Errorf("invalid LSN %q", s)
		}
		if digits == 8 {
			return 0, fmt.Errorf("invalid LSN %q: more than 8 hex digits", s)
		}
		v[part] = v[part]<<4 | d
		digits++
	}
	if part != 1 || digits == 0 {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return LSN(v[0]<<32 | v[1]), nil
}

// String returns PostgreSQL's text form, e.g. "0/3000148".
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// MarshalText encodes the LSN in PostgreSQL's text form.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses PostgreSQL's text form.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// parseLSNOrZero parses a possibly empty LSN column (NULL rendered as "").
func parseLSNOrZero(s string) (LSN, error) {
	if s == "" {
		return 0, nil
	}
	return ParseLSN(s)
}
