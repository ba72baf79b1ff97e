package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// agentProc is one agent OS process and its restart loop.
type agentProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
	stop chan struct{} // closed to stop and not restart
}

// AgentPID returns the pid of member name's agent, 0 if it is not running.
func (s *Supervisor) AgentPID(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.agents[name]; ok && p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.done:
			return 0
		default:
			return p.cmd.Process.Pid
		}
	}
	return 0
}

func (s *Supervisor) startAgent(name string) error {
	if err := os.MkdirAll(filepath.Join(s.d.DataDir, "logs"), 0o755); err != nil {
		return err
	}
	p := &agentProc{name: name, stop: make(chan struct{})}
	if err := s.spawn(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.agents[name] = p
	s.mu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.superviseAgent(p) }()
	return nil
}

// spawn starts the agent process. It runs on a locked OS thread that lives
// as long as the child so that Pdeathsig (which fires when the forking
// thread exits) only fires when the supervisor itself dies.
func (s *Supervisor) spawn(p *agentProc) error {
	logPath := filepath.Join(s.d.DataDir, "logs", p.name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("agent %s: %w", p.name, err)
	}
	started := make(chan error, 1)
	done := make(chan struct{})
	cmd := exec.Command(s.cfg.Binary, "agent", "--config", s.ConfigPath, "--member", p.name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), s.agentEnv(p.name)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		_ = logf.Close()
		return fmt.Errorf("start agent %s: %w", p.name, err)
	}
	s.mu.Lock()
	p.cmd, p.done = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) superviseAgent(p *agentProc) {
	for {
		s.mu.Lock()
		done := p.done
		s.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-done:
		}
		select {
		case <-p.stop:
			return
		default:
		}
		state := "exited"
		if p.cmd.ProcessState != nil {
			state = p.cmd.ProcessState.String()
		}
		if s.cfg.RestartDelay < 0 {
			s.printf("agent %s %s; not restarting", p.name, state)
			return
		}
		s.printf("agent %s %s; restarting in %s", p.name, state, s.cfg.RestartDelay)
		select {
		case <-p.stop:
			return
		case <-time.After(s.cfg.RestartDelay):
		}
		if err := s.spawn(p); err != nil {
			s.printf("%v", err)
		}
	}
}

// stopAgent asks an agent to stop (SIGTERM: it stops PostgreSQL cleanly) and
// waits, killing it after a minute.
func (s *Supervisor) stopAgent(name string) {
	s.mu.Lock()
	p, ok := s.agents[name]
	s.mu.Unlock()
	if !ok {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	s.mu.Lock()
	cmd, done := p.cmd, p.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
}

// SignalAgent sends sig to member name's agent (drills and tests).
func (s *Supervisor) SignalAgent(name string, sig syscall.Signal) error {
	pid := s.AgentPID(name)
	if pid == 0 {
		return fmt.Errorf("agent %s is not running", name)
	}
	return syscall.Kill(pid, sig)
}
