package supervisor

import (
	"os"
	"runtime/debug"
)

// gcPercent is the garbage collector's target of the long-running
// processes (up, api): the write buffer allocates per request, and with Go's
// default (100) collection took about a sixth of its CPU; at 400 the
// buffer acknowledges about 20% more writes per second on two cores
// (bench/buffer). The memory limit keeps the heap bounded anyway.
const (
	gcPercent   = 400
	memoryLimit = 4 << 30
)

// TuneGC applies gcPercent and memoryLimit unless GOGC or GOMEMLIMIT say
// otherwise.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
