package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// StopMode is PostgreSQL's shutdown mode.
type StopMode int

const (
	// StopSmart waits for all clients to disconnect (SIGTERM).
	StopSmart StopMode = iota
	// StopFast disconnects clients and shuts down cleanly (SIGINT).
	StopFast
	// StopImmediate aborts without a shutdown checkpoint (SIGQUIT); the next
	// start does crash recovery.
	StopImmediate
)

func (m StopMode) String() string {
	switch m {
	case StopSmart:
		return "smart"
	case StopFast:
		return "fast"
	case StopImmediate:
		return "immediate"
	}
	return "StopMode(" + strconv.Itoa(int(m)) + ")"
}

func (m StopMode) signal() syscall.Signal {
	switch m {
	case StopSmart:
		return syscall.SIGTERM
	case StopImmediate:
		return syscall.SIGQUIT
	}
	return syscall.SIGINT
}

// pollInterval is how often startup, shutdown and adopted postmasters are
// checked. Failover time is made of such waits, so it is short.
const pollInterval = 20 * time.Millisecond

// errAdoptedExited is the exit error of a postmaster this Instance did not
// start: it is not our child, so its exit status cannot be known.
var errAdoptedExited = errors.New("postmaster not started by this agent exited; exit status unknown")

// proc is one postmaster: started by this Instance, or adopted from
// postmaster.pid after an agent restart.
type proc struct {
	pid     int
	adopted bool
	done    chan struct{} // closed when the postmaster has exited
	err     error         // exit error; valid once done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// current returns the live postmaster on DataDir, adopting one found in
// postmaster.pid if this Instance has none (an agent restarted after a crash
// finds its old postmaster still running). It returns nil if none runs.
func (i *Instance) current() *proc {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur != nil && !i.cur.exited() {
		return i.cur
	}
	pid := i.pidFromPidFile()
	if pid <= 0 || !i.isPostmasterOf(pid) {
		return nil
	}
	if i.cur != nil && i.cur.pid == pid && !i.cur.adopted {
		// Our own child that just exited; its pid file is not yet gone.
		return nil
	}
	p := &proc{pid: pid, adopted: true, done: make(chan struct{})}
	i.cur = p
	i.log.Info("adopted running postmaster not started by this agent", "pid", pid)
	go func() {
		// Not our child, so no Wait: poll for its disappearance.
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for range t.C {
			if !i.isPostmasterOf(pid) {
				p.err = errAdoptedExited
				i.log.Warn("adopted postmaster exited", "pid", pid)
				close(p.done)
				return
			}
		}
	}()
	return p
}

// Running reports whether a postmaster runs on DataDir, whether or not this
// Instance started it.
func (i *Instance) Running() bool { return i.current() != nil }

// PID is the postmaster's pid, 0 when none runs.
func (i *Instance) PID() int {
	if p := i.current(); p != nil {
		return p.pid
	}
	return 0
}

// Exited returns a channel closed when the current postmaster exits, for
// any reason (shutdown, crash, kill -9). Each Start makes a new one. When no
// postmaster runs, the returned channel is already closed. For a postmaster
// adopted from a previous agent the exit is noticed by polling (20ms).
func (i *Instance) Exited() <-chan struct{} {
	if p := i.current(); p != nil {
		return p.done
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur != nil {
		return i.cur.done
	}
	return closedChan
}

// ExitErr is how the last postmaster exited: nil while it runs or after a
// clean exit, the wait error (e.g. "signal: killed") otherwise. For an
// adopted postmaster (not our child) the status cannot be known and any exit
// reports a non-nil error.
func (i *Instance) ExitErr() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur == nil || !i.cur.exited() {
		return nil
	}
	return i.cur.err
}

// Start runs `postgres -D DataDir -c config_file=ConfDir/postgresql.conf` as
// OSUser and waits until it accepts connections on the unix socket. WriteConfig
// must have been called once (the config file must exist). If a postmaster
// already runs on DataDir, Start returns nil without starting another.
//
// If ctx expires first, Start returns ErrStartTimeout and leaves the server
// running. If the server exits during startup, the error carries the last
// lines of its log.
func (i *Instance) Start(ctx context.Context) error {
	i.opMu.Lock()
	if p := i.current(); p != nil {
		i.opMu.Unlock()
		i.log.Info("postgres already running", "pid", p.pid, "adopted", p.adopted)
		return nil
	}
	p, logOffset, err := i.launch()
	i.opMu.Unlock()
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := i.waitReady(ctx, p, logOffset); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	i.log.Info("postgres accepting connections", "pid", p.pid)
	return nil
}

func (i *Instance) launch() (*proc, int64, error) {
	if !i.IsInitialized() {
		return nil, 0, fmt.Errorf("%s: %w", i.cfg.DataDir, ErrNotInitialized)
	}
	if _, err := os.Stat(i.ConfigFile()); err != nil {
		return nil, 0, fmt.Errorf("no configuration (call WriteConfig first): %w", err)
	}
	if err := i.checkReachable(i.cfg.DataDir); err != nil {
		return nil, 0, err
	}
	if err := i.ensureConfDir(); err != nil {
		return nil, 0, err
	}
	i.mu.Lock()
	s := i.settings
	i.mu.Unlock()
	if s != nil {
		// Re-applied here because BaseBackup and Rewind may have replaced
		// the data directory since WriteConfig.
		if err := i.applyStandbySignal(s.Standby); err != nil {
			return nil, 0, err
		}
	}
	if err := i.removeStalePidFile(); err != nil {
		return nil, 0, err
	}
	i.killLeftovers()
	// So that it can serve every ancestor's history to a standby that
	// cascades from it (a base backup brings only the newest file).
	if written, err := i.CompleteTimelineHistory(); err != nil {
		i.log.Warn("completing timeline history files", "err", err)
	} else if len(written) > 0 {
		i.log.Info("wrote missing timeline history files", "timelines", written)
	}
	// A newest timeline's segment whose copy broke before its switch point
	// would hide WAL this member received and confirmed (see walseg.go).
	aside := filepath.Join(filepath.Dir(i.cfg.DataDir), "wal-set-aside")
	if moved, err := i.SetAsidePartialSegments(aside); err != nil {
		i.log.Warn("looking for partial WAL segments of a new timeline", "err", err)
	} else if len(moved) > 0 {
		i.log.Warn("set aside WAL segment files of a new timeline that ended before its switch point: the older timeline's files hold that WAL in full", "files", moved, "moved_to", aside)
	}
	if err := checkPortFree(i.cfg.ListenAddr, i.cfg.Port); err != nil {
		return nil, 0, err
	}

	logf, err := os.OpenFile(i.LogFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("open server log: %w", err)
	}
	defer logf.Close() // the child has its own copy
	if err := i.chown(i.LogFile()); err != nil {
		return nil, 0, err
	}
	offset, _ := logf.Seek(0, io.SeekEnd)

	cmd := exec.Command(i.bin("postgres"), "-D", i.cfg.DataDir, "-c", "config_file="+i.ConfigFile())
	cmd.Env = i.env()
	cmd.Dir = "/"
	cmd.Stdout = logf
	cmd.Stderr = logf
	// SIGQUIT on agent death: immediate shutdown, so a dead agent never
	// leaves a primary running that no one watches.
	cmd.SysProcAttr = i.sysProcAttr(syscall.SIGQUIT)

	p := &proc{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the OS thread that forked the
		// child exits, not when the process does. Go may retire idle
		// threads, so this goroutine locks its thread and keeps it, blocked
		// in Wait, for the life of the postmaster. It never unlocks: when
		// the goroutine returns the runtime destroys the thread, and by
		// then the postmaster is gone.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		err := cmd.Wait()
		// Backends of a postmaster that died abnormally linger briefly and
		// keep its shared memory attached, which makes the next start fail
		// ("pre-existing shared memory block is still in use").
		reapGroup(p.pid)
		p.err = err
		if err != nil {
			i.log.Warn("postgres exited", "pid", p.pid, "err", err)
		} else {
			i.log.Info("postgres exited", "pid", p.pid)
		}
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, 0, fmt.Errorf("exec %s: %w", i.bin("postgres"), err)
	}
	i.mu.Lock()
	i.cur = p
	i.mu.Unlock()
	i.log.Info("postgres started", "pid", p.pid, "log", i.LogFile())
	return p, offset, nil
}

// waitReady polls postmaster.pid for the "ready"/"standby" status (which,
// unlike connection attempts, does not fill the server log with "the
// database system is starting up"), then confirms with a connection.
func (i *Instance) waitReady(ctx context.Context, p *proc, logOffset int64) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during startup (%v): %s", p.err, i.logTail(logOffset, 10))
		case <-ctx.Done():
			return fmt.Errorf("%w (pid %d still running): %w: %s", ErrStartTimeout, p.pid, ctx.Err(), i.logTail(logOffset, 5))
		case <-t.C:
		}
		pid, status := i.readPidFile()
		if pid != p.pid || (status != "ready" && status != "standby") {
			continue
		}
		cctx, cancel := withTimeout(ctx, 2*time.Second)
		conn, err := i.Conn(cctx)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
	}
}

// logTail returns the last n lines the server wrote since offset.
func (i *Instance) logTail(offset int64, n int) string {
	f, err := os.Open(i.LogFile())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > 64<<10 {
		offset = fi.Size() - 64<<10
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(f)
	return tail(b, n)
}

// Stop shuts the postmaster down in mode and waits for it to exit. If ctx
// expires first it escalates to immediate shutdown and then to SIGKILL of
// the whole process group, and returns nil once the server is gone (the next
// start then does crash recovery). It is a no-op if nothing runs, and also
// stops a postmaster this Instance did not start (found via postmaster.pid).
func (i *Instance) Stop(ctx context.Context, mode StopMode) error {
	// A smart shutdown waits for every client, including our own cached
	// Status connection.
	i.closeStatusConn()
	p := i.current()
	if p == nil {
		return nil
	}
	i.log.Info("stopping postgres", "pid", p.pid, "mode", mode)
	if err := syscall.Kill(p.pid, mode.signal()); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop postgres (pid %d): %w", p.pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	if mode != StopImmediate {
		i.log.Warn("postgres did not stop in time, escalating to immediate shutdown", "pid", p.pid, "mode", mode)
		syscall.Kill(p.pid, syscall.SIGQUIT)
		if waitDone(p.done, 5*time.Second) {
			return nil
		}
	}
	i.log.Warn("postgres did not stop, killing its process group", "pid", p.pid)
	if pg, err := syscall.Getpgid(p.pid); err == nil && pg == p.pid {
		syscall.Kill(-p.pid, syscall.SIGKILL)
	} else {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if waitDone(p.done, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("stop postgres (pid %d): still running after SIGKILL", p.pid)
}

func waitDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Reload sends SIGHUP to the postmaster so it rereads its configuration.
func (i *Instance) Reload() error {
	p := i.current()
	if p == nil {
		return fmt.Errorf("reload: %w", ErrNotRunning)
	}
	if err := syscall.Kill(p.pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload postgres (pid %d): %w", p.pid, err)
	}
	i.log.Info("postgres reloaded", "pid", p.pid)
	return nil
}
