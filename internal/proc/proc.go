// Package proc finds and signals process trees, for the faults drills
// inject (a node "crashes": its agent, its postmaster and every backend).
package proc

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Descendants lists the processes under pid, read from /proc.
func Descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pp, ok := parentOf(string(b)); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Parent is the parent pid of a running process, read from /proc.
func Parent(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	return parentOf(string(b))
}

// parentOf reads the parent pid from a /proc/<pid>/stat line: "pid (comm)
// state ppid ...", where comm may hold spaces and parentheses.
func parentOf(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// SignalNode sends sig to a member's agent, its postmaster and every
// process under the postmaster (PostgreSQL's children each lead their own
// process group, so a group signal would miss them). It fails only if the
// agent or the postmaster cannot be signalled; a pid <= 0 is skipped.
func SignalNode(agentPID, postmasterPID int, sig syscall.Signal) error {
	var tree []int
	if postmasterPID > 0 {
		tree = Descendants(postmasterPID)
	}
	for _, pid := range []int{agentPID, postmasterPID} {
		if pid > 0 {
			if err := syscall.Kill(pid, sig); err != nil {
				return err
			}
		}
	}
	for _, pid := range tree {
		_ = syscall.Kill(pid, sig)
	}
	return nil
}

// StopNode sends SIGSTOP to a member's agent and postmaster, then to every
// process under the postmaster, and returns every pid it stopped, for the
// heal to resume them all. The tree is read once the postmaster is
// stopped: it can no longer fork, so no backend starts between the list
// and the signal, stopped but missing from it (resumed at the heal only
// while the postmaster lives: killed meanwhile, its children are no
// longer found under it, and one stopped and not listed stays stopped for
// good, holding the shared memory no restart can then take).
func StopNode(agentPID, postmasterPID int) ([]int, error) {
	var stopped []int
	for _, pid := range []int{agentPID, postmasterPID} {
		if pid > 0 {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				return stopped, err
			}
			stopped = append(stopped, pid)
		}
	}
	if postmasterPID <= 0 {
		return stopped, nil
	}
	// A child may fork before its own stop lands: look again until a look
	// finds nothing new.
	seen := map[int]bool{}
	for round := 0; round < 10; round++ {
		fresh := 0
		for _, pid := range Descendants(postmasterPID) {
			if seen[pid] {
				continue
			}
			seen[pid] = true
			fresh++
			if syscall.Kill(pid, syscall.SIGSTOP) == nil {
				stopped = append(stopped, pid)
			}
		}
		if fresh == 0 {
			break
		}
	}
	return stopped, nil
}

// PostmasterPID reads the postmaster's pid from a data directory's
// postmaster.pid: 0 if there is none, or if that pid is not a running
// postgres process (a stale file after a crash names a pid that may have
// been reused by anything).
func PostmasterPID(dataDir string) int {
	b, err := os.ReadFile(dataDir + "/postmaster.pid")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), "postgres") {
		return 0
	}
	return pid
}
