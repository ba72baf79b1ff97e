// Package freeport picks loopback TCP ports for tests and benchmarks that
// start real servers.
//
// A port taken from the kernel with "127.0.0.1:0" is an ephemeral port:
// between the moment it is closed and the moment the server binds it, any
// outgoing connection of the machine (a replica streaming WAL, a client of
// the proxy) may be given the same number as its source port, and the
// server then cannot listen. Pick chooses below the kernel's ephemeral
// range instead, where outgoing connections never land, and checks that
// the port is free by binding it.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	// lowest is the lowest port Pick returns: below it live well-known
	// and registered services a developer machine may run.
	lowest = 10000
	// defaultEphemeralLow is Linux's default ip_local_port_range start.
	defaultEphemeralLow = 32768
)

var (
	mu    sync.Mutex
	given = map[int]bool{} // guarded by mu
)

// Pick returns a port on 127.0.0.1 that was free a moment ago, outside the
// ephemeral range when the machine leaves room for that, and never the same
// port twice in one process (two listeners given one port make an invalid
// config).
func Pick() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	high := ephemeralLow(readRange()) - 1
	for i := 0; i < 200; i++ {
		port, err := candidate(high)
		if err != nil {
			return 0, err
		}
		if given[port] || !free(port) {
			continue
		}
		given[port] = true
		return port, nil
	}
	return 0, errors.New("free port: no free port after 200 tries")
}

// candidate is a random port in [lowest, high], or one from the kernel when
// the ephemeral range leaves no room below it.
func candidate(high int) (int, error) {
	if high-lowest >= 1000 {
		return lowest + rand.IntN(high-lowest+1), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func readRange() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return ""
	}
	return string(b)
}

// ephemeralLow parses the first number of ip_local_port_range ("32768
// 60999"), with Linux's default when it cannot.
func ephemeralLow(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return defaultEphemeralLow
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 || n > 65535 {
		return defaultEphemeralLow
	}
	return n
}
