package supervisor

import (
	"fmt"

	"github.com/holdfast/holdfast/internal/proc"
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
	// held is non-nil while a down fault keeps the member down; closed
	// when the fault heals (guarded by Supervisor.mu).
	held chan struct{}
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
		if s.heldDown(p) != nil {
			s.printf("agent %s %s; held down by a fault, restarting when it heals", p.name, state)
		} else {
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
		}
		if held := s.heldDown(p); held != nil { // held from the start, or a down fault came meanwhile
			select {
			case <-p.stop:
				return
			case <-held:
			}
		}
		if err := s.spawn(p); err != nil {
			s.printf("%v", err)
		}
	}
}

func (s *Supervisor) heldDown(p *agentProc) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p.held
}

// bringDown carries out a down fault on member name: it is cut off, its
// agent and PostgreSQL are killed, and the agent is not restarted until
// bringUp. False if this supervisor does not run the member.
func (s *Supervisor) bringDown(name string) bool {
	m, _, ok := s.d.FindMember(name)
	s.mu.Lock()
	p, running := s.agents[name]
	var agentPID int
	if running {
		if p.held == nil {
			p.held = make(chan struct{})
		}
		if p.cmd != nil && p.cmd.Process != nil {
			select {
			case <-p.done:
			default:
				agentPID = p.cmd.Process.Pid
			}
		}
	}
	l := s.links[name]
	s.mu.Unlock()
	if !ok || !running {
		return false
	}
	if l != nil {
		l.cut()
	}
	pm := proc.PostmasterPID(filepath.Join(s.d.MemberDir(m), "pgdata"))
	if err := proc.SignalNode(agentPID, pm, syscall.SIGKILL); err != nil {
		s.printf("down %s: %v", name, err)
	}
	return true
}

// bringUp ends a down fault: the member is reachable again and its agent
// starts.
func (s *Supervisor) bringUp(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.links[name]; ok {
		l.heal()
	}
	if p, ok := s.agents[name]; ok && p.held != nil {
		close(p.held)
		p.held = nil
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
