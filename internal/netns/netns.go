// Package netns builds lab hosts on one Linux machine: each host is a
// network namespace with its own address, and every host is joined to a
// router namespace by a veth pair, so that traffic between two hosts is
// routed there and a partition is real (issue 19). The machine's own
// namespace reaches every host through one more veth pair to the router.
//
// Faults act in the router, with iproute2 only (no nftables or netem,
// which minimal kernels lack):
//   - a one-way partition is a policy rule that drops, silently, what one
//     host sends to another (`ip rule add from A to B blackhole`); both
//     directions make a symmetric one;
//   - an isolated host has its link down;
//   - a slow link is a token bucket (tbf) on both ends of a host's link.
//
// It needs root (CAP_NET_ADMIN) and the ip command (Debian's iproute2).
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// Lab is a router namespace and the hosts joined to it.
type Lab struct {
	prefix string // of every namespace and interface name
	octet  int    // addresses are 10.<octet>.<host>.<1|2>
	router string // the router's namespace

	mu    sync.Mutex
	hosts map[string]*Host
	rules map[[2]string]int // partition (from, to) -> rule priority
	next  int               // next rule priority
}

// Host is one lab host.
type Host struct {
	Name string
	// NS is its network namespace (ip netns exec NS ...).
	NS string
	// Addr is its address, reachable from the other hosts and from the
	// machine's own namespace.
	Addr netip.Addr

	index    int
	ifHost   string // the veth end inside the host
	ifRouter string // the veth end inside the router
}

// ErrUnavailable says network namespaces cannot be made here (not root,
// or no ip command).
var ErrUnavailable = errors.New("network namespaces unavailable")

// Available reports whether a Lab can be built here, and why not.
func Available() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: no ip command (install iproute2)", ErrUnavailable)
	}
	if err := run(context.Background(), "ip", "netns", "list"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// New builds the router namespace and the machine's link to it. prefix
// (at most 6 characters) names every namespace and interface; octet
// (1-254) picks the addresses, 10.octet.0.0/16, which must be free on the
// machine.
func New(ctx context.Context, prefix string, octet int) (*Lab, error) {
	switch {
	case prefix == "" || len(prefix) > 6:
		return nil, fmt.Errorf("netns: prefix %q: 1 to 6 characters", prefix)
	case octet < 1 || octet > 254:
		return nil, fmt.Errorf("netns: octet %d: between 1 and 254", octet)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	l := &Lab{prefix: prefix, octet: octet, router: prefix + "-router", hosts: map[string]*Host{}, rules: map[[2]string]int{}, next: 1000}
	rootIf, routerIf := prefix+"-root", "root"
	steps := [][]string{
		{"ip", "netns", "add", l.router},
		{"ip", "-n", l.router, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", l.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
		{"ip", "link", "add", rootIf, "type", "veth", "peer", "name", routerIf, "netns", l.router},
		{"ip", "addr", "add", l.addr(0, 1).String() + "/24", "dev", rootIf},
		{"ip", "-n", l.router, "addr", "add", l.addr(0, 2).String() + "/24", "dev", routerIf},
		{"ip", "link", "set", rootIf, "up"},
		{"ip", "-n", l.router, "link", "set", routerIf, "up"},
		{"ip", "route", "add", fmt.Sprintf("10.%d.0.0/16", octet), "via", l.addr(0, 2).String()},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// addr is 10.octet.index.last.
func (l *Lab) addr(index, last int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(l.octet), byte(index), byte(last)})
}

// AddHost makes a host: its namespace, its link to the router and its
// address, 10.octet.N.2 for the Nth host.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	l.mu.Lock()
	if _, dup := l.hosts[name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("netns: host %q exists", name)
	}
	index := len(l.hosts) + 1
	if index > 250 {
		l.mu.Unlock()
		return nil, fmt.Errorf("netns: at most 250 hosts")
	}
	h := &Host{Name: name, NS: fmt.Sprintf("%s-h%d", l.prefix, index), Addr: l.addr(index, 2), index: index,
		ifHost: "eth0", ifRouter: fmt.Sprintf("h%d", index)}
	l.hosts[name] = h
	l.mu.Unlock()
	gw := l.addr(index, 1).String()
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "link", "add", "name", h.ifHost, "netns", h.NS, "type", "veth", "peer", "name", h.ifRouter, "netns", l.router},
		{"ip", "-n", h.NS, "addr", "add", h.Addr.String() + "/24", "dev", h.ifHost},
		{"ip", "-n", l.router, "addr", "add", gw + "/24", "dev", h.ifRouter},
		{"ip", "-n", h.NS, "link", "set", h.ifHost, "up"},
		{"ip", "-n", l.router, "link", "set", h.ifRouter, "up"},
		{"ip", "-n", h.NS, "route", "add", "default", "via", gw},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
	}
	return h, nil
}

// Host returns the host named name.
func (l *Lab) Host(name string) (*Host, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.hosts[name]
	return h, ok
}

// Command runs name with args inside host's namespace.
func (l *Lab) Command(ctx context.Context, host *Host, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", host.NS, name}, args...)...)
}

func (l *Lab) pair(from, to string) (*Host, *Host, error) {
	a, ok := l.hosts[from]
	if !ok {
		return nil, nil, fmt.Errorf("netns: no host %q", from)
	}
	b, ok := l.hosts[to]
	if !ok {
		return nil, nil, fmt.Errorf("netns: no host %q", to)
	}
	return a, b, nil
}

// Partition drops, silently, every packet host from sends to host to: to
// no longer hears from; from still hears to (a one-way partition).
// Partitioning a pair already cut does nothing.
func (l *Lab) Partition(ctx context.Context, from, to string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, b, err := l.pair(from, to)
	if err != nil {
		return err
	}
	key := [2]string{from, to}
	if _, cut := l.rules[key]; cut {
		return nil
	}
	prio := l.next
	if err := run(ctx, "ip", "-n", l.router, "rule", "add", "from", a.Addr.String(), "to", b.Addr.String(), "blackhole", "prio", fmt.Sprint(prio)); err != nil {
		return err
	}
	l.next++
	l.rules[key] = prio
	return nil
}

// Heal undoes Partition(from, to).
func (l *Lab) Heal(ctx context.Context, from, to string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := [2]string{from, to}
	prio, cut := l.rules[key]
	if !cut {
		return nil
	}
	if err := run(ctx, "ip", "-n", l.router, "rule", "del", "prio", fmt.Sprint(prio)); err != nil {
		return err
	}
	delete(l.rules, key)
	return nil
}

// Partitions lists the cut pairs, sorted.
func (l *Lab) Partitions() [][2]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([][2]string, 0, len(l.rules))
	for k := range l.rules {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i][0] < out[j][0] || out[i][0] == out[j][0] && out[i][1] < out[j][1]
	})
	return out
}

// HealAll undoes every partition.
func (l *Lab) HealAll(ctx context.Context) error {
	var errs []error
	for _, p := range l.Partitions() {
		errs = append(errs, l.Heal(ctx, p[0], p[1]))
	}
	return errors.Join(errs...)
}

// SetLink takes a host's link to the router down (isolated from every
// other host and from the machine) or up again.
func (l *Lab) SetLink(ctx context.Context, name string, up bool) error {
	l.mu.Lock()
	h, ok := l.hosts[name]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("netns: no host %q", name)
	}
	state := "down"
	if up {
		state = "up"
	}
	return run(ctx, "ip", "-n", l.router, "link", "set", h.ifRouter, state)
}

// Slow limits a host's link to rate (tc's units, such as "1mbit") both
// ways; an empty rate removes the limit.
func (l *Lab) Slow(ctx context.Context, name, rate string) error {
	l.mu.Lock()
	h, ok := l.hosts[name]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("netns: no host %q", name)
	}
	for _, end := range [][2]string{{h.NS, h.ifHost}, {l.router, h.ifRouter}} {
		_ = run(ctx, "ip", "netns", "exec", end[0], "tc", "qdisc", "del", "dev", end[1], "root")
		if rate == "" {
			continue
		}
		if err := run(ctx, "ip", "netns", "exec", end[0], "tc", "qdisc", "add", "dev", end[1], "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"); err != nil {
			return err
		}
	}
	return nil
}

// Close removes every namespace (their links go with them) and the
// machine's route and link to the router. Processes still running in a
// host's namespace keep it alive until they exit: stop them first.
func (l *Lab) Close() error {
	ctx := context.Background()
	var errs []error
	_ = run(ctx, "ip", "route", "del", fmt.Sprintf("10.%d.0.0/16", l.octet))
	_ = run(ctx, "ip", "link", "del", l.prefix+"-root")
	l.mu.Lock()
	hosts := make([]*Host, 0, len(l.hosts))
	for _, h := range l.hosts {
		hosts = append(hosts, h)
	}
	l.hosts = map[string]*Host{}
	l.rules = map[[2]string]int{}
	l.mu.Unlock()
	for _, h := range hosts {
		if err := run(ctx, "ip", "netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := run(ctx, "ip", "netns", "del", l.router); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// run runs a command and returns its output in the error when it fails.
func run(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
