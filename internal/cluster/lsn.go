package cluster

import "github.com/holdfast/holdfast/internal/lsn"

// LSN is a PostgreSQL write-ahead log position (internal/lsn).
type LSN = lsn.LSN
