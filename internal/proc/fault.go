package proc

import (
	"fmt"
	"syscall"
	"time"
)

// Member faults of the compound-fault runs (TestFaultsBackToBack,
// bench/compound), as real outages bring them.
const (
	FaultKillPostmaster = "kill-postmaster" // kill -9 of the postmaster
	FaultKillNode       = "kill-node"       // kill -9 of the agent and the postmaster
	FaultPause          = "pause"           // SIGSTOP of the agent and of the postmaster alone (backends and walsenders run on)
)

// MemberFault injects kind on a member's agent and postmaster. For a pause
// it returns a channel closed once both were resumed, pause later.
func MemberFault(kind string, agentPID, postmasterPID int, pause time.Duration) (<-chan struct{}, error) {
	resumed := make(chan struct{})
	switch kind {
	case FaultKillPostmaster:
		close(resumed)
		return resumed, syscall.Kill(postmasterPID, syscall.SIGKILL)
	case FaultKillNode:
		close(resumed)
		_ = syscall.Kill(agentPID, syscall.SIGKILL)
		return resumed, syscall.Kill(postmasterPID, syscall.SIGKILL)
	case FaultPause:
		_ = syscall.Kill(agentPID, syscall.SIGSTOP)
		_ = syscall.Kill(postmasterPID, syscall.SIGSTOP)
		time.AfterFunc(pause, func() {
			defer close(resumed)
			_ = syscall.Kill(postmasterPID, syscall.SIGCONT)
			_ = syscall.Kill(agentPID, syscall.SIGCONT)
		})
		return resumed, nil
	}
	close(resumed)
	return resumed, fmt.Errorf("unknown fault %q (%s, %s, %s)", kind, FaultKillPostmaster, FaultKillNode, FaultPause)
}
