package postgres

import (
	"github.com/holdfast/holdfast/internal/lsn"
)

// LSN is a PostgreSQL write-ahead log position (internal/lsn).
type LSN = lsn.LSN

// parseLSNOrZero parses a possibly empty LSN column (NULL rendered as "").
func parseLSNOrZero(s string) (LSN, error) {
	if s == "" {
		return 0, nil
	}
	return lsn.Parse(s)
}
