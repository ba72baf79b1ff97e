package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParentOf(t *testing.T) {
	for _, tt := range []struct {
		stat string
		want int
		ok   bool
	}{
		{"12 (postgres) S 7 12 12 0", 7, true},
		{"13 (a) b) (c) R 9 13", 9, true},
		{"14 (x", 0, false},
		{"15 (x) S", 0, false},
		{"16 (x) S notanumber", 0, false},
	} {
		got, ok := parentOf(tt.stat)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parentOf(%q) = %d, %v; want %d, %v", tt.stat, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSignalNodeKillsTheTree(t *testing.T) {
	// sh (the "postmaster") with a sleeping child in its own process group.
	pm := exec.Command("sh", "-c", "setsid sleep 60 & wait")
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	agent := exec.Command("sleep", "60")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var kids []int
	deadline := time.Now().Add(10 * time.Second)
	for len(kids) == 0 && time.Now().Before(deadline) {
		kids = Descendants(pm.Process.Pid)
		time.Sleep(10 * time.Millisecond)
	}
	if len(kids) == 0 {
		t.Fatal("no child found under the shell")
	}
	if err := SignalNode(agent.Process.Pid, pm.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = pm.Wait()
	_ = agent.Wait()
	for _, k := range kids {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(k, 0) == nil {
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/stat"); isZombie(string(b)) {
				break // a zombie: killed, waiting to be reaped by init
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d survived", k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestPostmasterPID(t *testing.T) {
	dir := t.TempDir()
	if PostmasterPID(dir) != 0 {
		t.Fatal("pid without a file")
	}
	// A stale file names a pid that is not postgres: here, the test itself.
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/var/lib/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := PostmasterPID(dir); got != 0 {
		t.Fatalf("pid %d of a process that is not postgres", got)
	}
}

func isZombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	return i >= 0 && len(f) > 0 && f[0] == "Z"
}

// TestStopNodeListsEveryStopped: a "postmaster" forking all the time; every
// process StopNode stopped is in its list (the heal resumes exactly that
// list), and nothing is forked once it returns.
func TestStopNodeListsEveryStopped(t *testing.T) {
	pm := exec.Command("sh", "-c", "while true; do setsid sleep 60 & sleep 0.005; done")
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	agent := exec.Command("sleep", "60")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var stopped []int
	t.Cleanup(func() {
		for _, pid := range append(stopped, Descendants(pm.Process.Pid)...) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		_ = pm.Process.Kill()
		_ = agent.Process.Kill()
		_, _ = pm.Process.Wait()
		_, _ = agent.Process.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for len(Descendants(pm.Process.Pid)) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var err error
	if stopped, err = StopNode(agent.Process.Pid, pm.Process.Pid); err != nil {
		t.Fatal(err)
	}
	listed := map[int]bool{}
	for _, pid := range stopped {
		listed[pid] = true
	}
	if !listed[agent.Process.Pid] || !listed[pm.Process.Pid] {
		t.Fatalf("agent or postmaster missing from %v", stopped)
	}
	kids := Descendants(pm.Process.Pid)
	if len(kids) == 0 {
		t.Fatal("no child under the shell")
	}
	for _, k := range kids {
		if !listed[k] {
			t.Fatalf("child %d under the stopped postmaster, not in the list of stopped processes", k)
		}
		// A signal lands when the process next runs.
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/stat")
			s := string(b)
			if s == "" || isZombie(s) || strings.Contains(s[strings.LastIndexByte(s, ')'):], " T ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d not stopped: %s", k, s)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
