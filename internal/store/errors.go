package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrUnavailable means etcd could not be reached or did not answer in time
	// (no connection, no raft leader, request timeout or the caller's
	// deadline, server stopping, overloaded). The outcome of a write that
	// failed this way is unknown: it may have been applied. Callers treat it
	// as "don't know", never as "no". A caller's own cancellation is reported
	// as context.Canceled instead.
	ErrUnavailable = errors.New("etcd unavailable")

	// ErrLeaseNotFound means the lease has expired or was revoked. Keys that
	// were attached to it are gone; the agent must grant a new lease and, if it
	// led, consider its term over.
	ErrLeaseNotFound = errors.New("lease not found (expired or revoked)")

	// ErrCorrupt means a value read from etcd could not be decoded. It is
	// returned where a single key was asked for (Leader, Topology, Initialize);
	// collections skip such values and log them instead.
	ErrCorrupt = errors.New("undecodable value in etcd")

	// ErrConflict means UpdateTopology lost the compare-and-swap race on every
	// attempt: the topology is changing faster than the caller can follow.
	ErrConflict = errors.New("topology changed concurrently too often")

	// ErrNotInitialized means SetSystemID was called before any member claimed
	// the initialize key.
	ErrNotInitialized = errors.New("cluster not initialized: no member has claimed initialize")

	// ErrSystemIDMismatch means a different PostgreSQL system identifier is
	// already recorded: two initdb runs happened, and the second data
	// directory must not join this cluster.
	ErrSystemIDMismatch = errors.New("a different system identifier is already recorded")

	// ErrClosed means the Store was used after Close.
	ErrClosed = errors.New("store closed")
)

// wrapErr classifies an error from the etcd client, in one place, into what
// the caller can act on: lease gone, caller gave up, store unavailable, or a
// request etcd rejected (a bug on our side, not worth retrying).
func wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	// The client returns either rpctypes.EtcdError values or raw gRPC status
	// errors depending on the code path; normalise to compare.
	norm := rpctypes.Error(err)
	if errors.Is(norm, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("store: %s: %w", op, ErrLeaseNotFound)
	}
	if ctx.Err() == context.Canceled {
		// The caller cancelled (usually shutdown): not the store's fault.
		return fmt.Errorf("store: %s: %w", op, context.Canceled)
	}
	if isUnavailable(norm) {
		return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// isUnavailable says whether err is a transport or availability failure as
// opposed to a request etcd understood and refused.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// Our request timeout (or the client shutting down underneath us).
		return true
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	} else {
		// Not a gRPC error at all: a dial or I/O error.
		return true
	}
	switch code {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition,
		codes.OutOfRange, codes.Unimplemented:
		return false
	default:
		// Unavailable (no leader, connection refused), DeadlineExceeded,
		// ResourceExhausted (too many requests, no space), Internal, Unknown...
		return true
	}
}
