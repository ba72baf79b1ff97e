package cluster

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log position. It is encoded in JSON in
// PostgreSQL's own text form ("0/3000148") so that what holdfast prints can be
// pasted into SQL.
type LSN uint64

// ParseLSN parses PostgreSQL's "X/Y" text form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("invalid LSN %q: want two hexadecimal numbers of at most 8 digits separated by '/'", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// MarshalJSON encodes the LSN as PostgreSQL text.
func (l LSN) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON accepts PostgreSQL text or a plain number.
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
	v, err := ParseLSN(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}
