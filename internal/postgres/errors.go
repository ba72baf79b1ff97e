package postgres

import "errors"

var (
	// ErrPortInUse is returned by Start when something else already listens on
	// ListenAddr:Port. Starting anyway would leave PostgreSQL unreachable over
	// TCP (it only warns) while the agent believes it serves.
	ErrPortInUse = errors.New("port already in use")

	// ErrRewindFailed wraps every failure of pg_rewind itself but a lost
	// source. The data directory may then be half rewound: the caller
	// should replace it with a fresh copy (Recopy). Rewind returns other
	// errors (source unreachable or lost before pg_rewind changed anything,
	// instance running) when it has not touched the data.
	ErrRewindFailed = errors.New("pg_rewind failed")

	// ErrRunning is returned by operations that need the instance stopped.
	ErrRunning = errors.New("postgres is running")

	// ErrNotRunning is returned by operations that need a running postmaster.
	ErrNotRunning = errors.New("postgres is not running")

	// ErrStartTimeout is returned by Start when ctx expires before the server
	// accepts connections. The postmaster is left running (a standby may be
	// waiting for WAL from its primary); the caller decides whether to Stop it.
	ErrStartTimeout = errors.New("postgres did not accept connections in time")

	// ErrNotInitialized is returned when DataDir holds no cluster.
	ErrNotInitialized = errors.New("data directory is not initialized")
)
