package postgres

// What a start finds on the data directory before it: the pid file of a
// postmaster that may or may not run, and PostgreSQL processes a dead one
// left behind.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readPidFile returns the pid (line 1) and status (line 8: starting,
// stopping, ready, standby) from DataDir/postmaster.pid.
func (i *Instance) readPidFile() (int, string) {
	b, err := os.ReadFile(filepath.Join(i.cfg.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, ""
	}
	lines := strings.Split(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	status := ""
	if len(lines) >= 8 {
		status = strings.TrimSpace(lines[7])
	}
	return pid, status
}

func (i *Instance) pidFromPidFile() int {
	pid, _ := i.readPidFile()
	return pid
}

// removeStalePidFile removes postmaster.pid when no postmaster of DataDir
// runs under the pid it names. PostgreSQL itself would refuse to start if
// that pid had been reused by an unrelated live process, which happens after
// a reboot or in a container.
func (i *Instance) removeStalePidFile() error {
	path := filepath.Join(i.cfg.DataDir, "postmaster.pid")
	pid := i.pidFromPidFile()
	if pid == 0 {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
	} else if i.isPostmasterOf(pid) {
		return fmt.Errorf("%w: postmaster pid %d already runs on %s", ErrRunning, pid, i.cfg.DataDir)
	}
	i.log.Info("removing stale postmaster.pid", "pid", pid)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// killLeftovers ends the processes a dead postmaster left on DataDir (its
// backends, walsenders, auxiliary processes). They exit on their own once
// they notice the postmaster is gone, unless they cannot run: stopped
// (SIGSTOP, a frozen cgroup) or stuck. Until they exit they hold the old
// shared memory, and every start fails with "pre-existing shared memory
// block is still in use": the member could not come back until someone
// killed them by hand. Called once no postmaster runs on DataDir
// (removeStalePidFile made sure); it waits up to leftoverWait for them to
// go (one stuck in the kernel may outlive it: the start then fails and is
// tried again).
func (i *Instance) killLeftovers() {
	pids := i.leftovers()
	if len(pids) == 0 {
		return
	}
	i.log.Warn("processes of a previous postmaster still run on the data directory (stopped or stuck): killing them, or the server cannot start", "pids", pids)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	deadline := time.Now().Add(leftoverWait)
	for len(i.leftovers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// leftoverWait bounds the wait for killed leftovers to exit.
const leftoverWait = 5 * time.Second

// leftovers lists the live postgres processes whose working directory is
// DataDir (every process of a postmaster works there; comm stays
// "postgres" whatever title a backend shows).
func (i *Instance) leftovers() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := i.realDataDir()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != want {
			continue
		}
		if state, _ := procStat(pid); state == "" || state == "Z" || state == "X" {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// isPostmasterOf reports whether pid is a live (not zombie) process whose
// working directory is DataDir: the postmaster chdirs there, which tells it
// apart from an unrelated process that reused the pid.
func (i *Instance) isPostmasterOf(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if state, _ := procStat(pid); state == "" || state == "Z" || state == "X" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		// Not allowed to look (another user's process): fall back to the name.
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.TrimSpace(string(comm)) == "postgres"
	}
	return cwd == i.realDataDir()
}

// procStat returns the state letter and process group of pid from
// /proc/pid/stat ("" if it does not exist).
func procStat(pid int) (state string, pgrp int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// The command name is in parentheses and may itself contain spaces
	// and parentheses; the fields after the last ')' are fixed.
	k := bytes.LastIndexByte(b, ')')
	if k < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[k+1:]))
	if len(f) < 3 {
		return "", 0
	}
	pgrp, _ = strconv.Atoi(f[2])
	return f[0], pgrp
}

// reapGroup kills what is left of process group pgid and waits (up to 2s)
// until no live member remains. Zombies are ignored: they hold no shared
// memory, and reaping them is their new parent's business.
func reapGroup(pgid int) {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		return // ESRCH: nothing left
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && groupAlive(pgid) {
		time.Sleep(10 * time.Millisecond)
	}
}

func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, pg := procStat(pid); pg == pgid && state != "Z" && state != "X" && state != "" {
			return true
		}
	}
	return false
}

// checkPortFree refuses to start when something already listens on one of
// the listen addresses: PostgreSQL would only log a warning and run without
// that TCP socket, invisible to the other members.
func checkPortFree(listen string, port int) error {
	for _, a := range strings.Split(listen, ",") {
		a = strings.TrimSpace(a)
		if a == "*" {
			a = ""
		}
		addr := net.JoinHostPort(a, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w: %s", ErrPortInUse, addr)
			}
			return fmt.Errorf("check listen address %s: %w", addr, err)
		}
		l.Close()
	}
	return nil
}

// realDataDir is DataDir with symbolic links resolved: what a process
// working there shows as its cwd.
func (i *Instance) realDataDir() string {
	if r, err := filepath.EvalSymlinks(i.cfg.DataDir); err == nil {
		return r
	}
	return i.cfg.DataDir
}
