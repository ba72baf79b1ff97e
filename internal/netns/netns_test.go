package netns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary, run inside a host's namespace, listens or dials.
const (
	envListen = "HOLDFAST_NETNS_TEST_LISTEN"
	envDial   = "HOLDFAST_NETNS_TEST_DIAL"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envListen); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}
	if addr := os.Getenv(envDial); addr != "" {
		if err := dial(addr); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// dial connects to addr and reads the listener's greeting, within a second.
func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "hi" {
		return fmt.Errorf("greeting %q", b)
	}
	return nil
}

// TestLabPartitions: hosts reach each other and the machine through the
// router; a one-way partition in either direction cuts a TCP exchange; a
// host whose link is down is unreachable; healing restores each; Close
// leaves no namespace behind.
func TestLabPartitions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("t%d", os.Getpid()%100000)
	l, err := New(ctx, prefix, 200+os.Getpid()%50)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	a, err := l.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddHost(ctx, "a"); err == nil {
		t.Fatal("a second host named a was made")
	}
	target := net.JoinHostPort(b.Addr.String(), "7000")
	listener := l.Command(ctx, b, os.Args[0])
	listener.Env = append(os.Environ(), envListen+"="+target)
	out, err := listener.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Process.Kill(); _ = listener.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("listener in %s: %q", b.NS, line)
	}
	fromA := func() error {
		cmd := l.Command(ctx, a, os.Args[0])
		cmd.Env = append(os.Environ(), envDial+"="+target)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	fromMachine := func() error { return dial(target) }
	expect := func(step string, check func() error, reach bool) {
		t.Helper()
		err := check()
		if reach && err != nil {
			t.Fatalf("%s: unreachable: %v", step, err)
		}
		if !reach && err == nil {
			t.Fatalf("%s: reachable", step)
		}
	}
	expect("a to b", fromA, true)
	expect("machine to b", fromMachine, true)

	if err := l.Partition(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	expect("a to b, a's packets to b dropped", fromA, false)
	expect("machine to b while a is cut from b", fromMachine, true)
	if err := l.Heal(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	expect("a to b, healed", fromA, true)

	if err := l.Partition(ctx, "b", "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Partition(ctx, "b", "a"); err != nil { // again: nothing more to do
		t.Fatal(err)
	}
	if got := l.Partitions(); len(got) != 1 || got[0] != [2]string{"b", "a"} {
		t.Fatalf("partitions %v", got)
	}
	expect("a to b, b's answers dropped", fromA, false)
	if err := l.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	expect("a to b, all healed", fromA, true)

	if err := l.SetLink(ctx, "b", false); err != nil {
		t.Fatal(err)
	}
	expect("machine to b, b's link down", fromMachine, false)
	if err := l.SetLink(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	expect("machine to b, link up", fromMachine, true)

	if err := l.Slow(ctx, "b", "8mbit"); err != nil {
		t.Fatal(err)
	}
	expect("a to b, slowed", fromA, true)
	if err := l.Slow(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}

	_ = listener.Process.Kill()
	_ = listener.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(list), prefix+"-") {
		t.Fatalf("namespaces left after Close:\n%s", list)
	}
	if err := exec.Command("ip", "link", "show", prefix+"-root").Run(); err == nil {
		t.Fatalf("link %s-root left after Close", prefix)
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	for _, c := range []struct {
		prefix string
		octet  int
		want   string
	}{
		{"", 10, "prefix"},
		{"toolong", 10, "prefix"},
		{"ok", 0, "octet"},
		{"ok", 255, "octet"},
	} {
		if _, err := New(context.Background(), c.prefix, c.octet); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %d): %v, want an error naming %s", c.prefix, c.octet, err, c.want)
		}
	}
}
