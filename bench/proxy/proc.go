package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/freeport"
)

// child is a long-running process of the benchmark (holdfast up, a
// holdfast proxy, PgBouncer) in its own process group, with its output
// appended to a log file.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has been waited for
}

// startChild starts cmd. The goroutine that forks it keeps its OS thread
// for the child's lifetime: Pdeathsig fires when the forking thread exits,
// and it must fire only when the benchmark itself dies (killed, or a
// panic), so that nothing outlives it.
func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(c.done)
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace for the leader to
// exit, then kills the group.
func (c *child) stop(sig syscall.Signal, grace time.Duration) {
	if c == nil || c.cmd.Process == nil {
		return
	}
	if !c.exited() {
		_ = syscall.Kill(-c.pid(), sig)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
			<-c.done
		}
	}
	// Whatever the leader left behind in its group.
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
}

// tail returns the last n lines of the child's log, for error messages.
func (c *child) tail(n int) string { return tailFile(c.log, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback port that was free a moment ago (see package
// freeport).
func freePort() (int, error) { return freeport.Pick() }

// osUser is the postgres OS account PgBouncer runs as when the benchmark
// runs as root (PgBouncer refuses root).
type osUser struct {
	uid, gid int
	groups   []uint32
}

func lookupOSUser(name string) (osUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %s: %w", name, err)
	}
	var o osUser
	o.uid, _ = strconv.Atoi(u.Uid)
	o.gid, _ = strconv.Atoi(u.Gid)
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.Atoi(g); err == nil {
				o.groups = append(o.groups, uint32(n))
			}
		}
	}
	return o, nil
}

func (o osUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid), Groups: o.groups}
}

// rssKiB reads VmRSS (resident memory) and VmHWM (its peak) of pid.
func rssKiB(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, peak, nil
}

// raiseFileLimit raises RLIMIT_NOFILE to its hard maximum; the poolers
// started afterwards inherit it. It returns the new soft limit.
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

// tcpConnsTo counts pid's established TCP connections to remotePort: the
// server connections a pooler holds. It reads the process's socket inodes
// from /proc/PID/fd and matches them in /proc/PID/net/tcp{,6}, so it needs
// no database connection (PostgreSQL may have none left to give).
func tcpConnsTo(pid, remotePort int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		n += countTCP(string(b), inodes, remotePort)
	}
	return n, nil
}

// countTCP counts the established connections of a /proc/net/tcp table
// whose socket inode is in inodes and whose remote port is port.
func countTCP(table string, inodes map[string]bool, port int) int {
	const established = "01"
	n := 0
	for _, line := range strings.Split(table, "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != established || !inodes[f[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(f[2], ":")
		if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
			n++
		}
	}
	return n
}
