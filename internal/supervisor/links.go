package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/cluster"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/faultlink"
	"github.com/holdfast/holdfast/internal/store"
)

// memberLinks are the fault links of one member: in front of its
// PostgreSQL (every client and peer connects through it) and between its
// agent and etcd. Cutting both partitions the member.
type memberLinks struct {
	pg   *faultlink.Link
	etcd []*faultlink.Link // one per etcd endpoint
}

// etcdEndpoints are the addresses the member's agent is given instead of
// etcd's own.
func (l *memberLinks) etcdEndpoints() string {
	var eps []string
	for _, e := range l.etcd {
		eps = append(eps, e.Addr())
	}
	return strings.Join(eps, ",")
}

// apply carries out network fault f on the member's links. The member is
// the target of its PostgreSQL link and the client of its etcd links, so
// a one-way fault holds opposite directions on the two.
func (l *memberLinks) apply(f store.Fault) {
	switch f.Mode {
	case store.FaultPartition:
		l.pg.Cut()
		for _, e := range l.etcd {
			e.Cut()
		}
	case store.FaultPartitionEtcd:
		for _, e := range l.etcd {
			e.Cut()
		}
	case store.FaultOneWayFrom:
		l.pg.CutOneWay(faultlink.FromTarget)
		for _, e := range l.etcd {
			e.CutOneWay(faultlink.ToTarget)
		}
	case store.FaultOneWayTo:
		l.pg.CutOneWay(faultlink.ToTarget)
		for _, e := range l.etcd {
			e.CutOneWay(faultlink.FromTarget)
		}
	case store.FaultSlow:
		d := time.Duration(f.DelayMS) * time.Millisecond
		l.pg.Slow(d)
		for _, e := range l.etcd {
			e.Slow(d)
		}
	}
}

// cut partitions the member (a member held down).
func (l *memberLinks) cut() { l.apply(store.Fault{Mode: store.FaultPartition}) }

// faultMessage is how the event log tells that fault f holds on member.
func faultMessage(member string, f store.Fault) string {
	switch f.Mode {
	case store.FaultPartitionEtcd:
		return fmt.Sprintf("%s's agent cut off from etcd; its PostgreSQL still reachable (asked by %s)", member, f.By)
	case store.FaultOneWayFrom:
		return fmt.Sprintf("%s unheard: what it sends is held, it hears everyone (asked by %s)", member, f.By)
	case store.FaultOneWayTo:
		return fmt.Sprintf("%s deaf: what is sent to it is held, everyone hears it (asked by %s)", member, f.By)
	case store.FaultSlow:
		return fmt.Sprintf("%s's links slowed by %d ms each way (asked by %s)", member, f.DelayMS, f.By)
	}
	return fmt.Sprintf("%s cut off from etcd, clients and peers (asked by %s)", member, f.By)
}

func (l *memberLinks) heal() {
	l.pg.Heal()
	for _, e := range l.etcd {
		e.Heal()
	}
}

func (l *memberLinks) close() {
	_ = l.pg.Close()
	for _, e := range l.etcd {
		_ = e.Close()
	}
}

// endpointHostPort is host:port of an etcd endpoint ("host:port" or a URL).
func endpointHostPort(ep string) (string, error) {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", err
		}
		if u.Scheme != "http" {
			return "", fmt.Errorf("etcd endpoint %s: fault links forward plain http only", ep)
		}
		return u.Host, nil
	}
	if _, _, err := net.SplitHostPort(ep); err != nil {
		return "", fmt.Errorf("etcd endpoint %s: %w", ep, err)
	}
	return ep, nil
}

// startLinks starts the links of every member whose advertise_port differs
// from its port.
func (s *Supervisor) startLinks() error {
	for _, r := range s.d.Regions {
		for _, m := range r.Members {
			if !m.HasLink() {
				continue
			}
			if err := s.startMemberLinks(m); err != nil {
				s.closeLinks()
				return err
			}
		}
	}
	return nil
}

func (s *Supervisor) startMemberLinks(m config.Member) error {
	pg, err := faultlink.Listen(net.JoinHostPort(m.Host, fmt.Sprint(m.AdvertisePort)), net.JoinHostPort(m.Host, fmt.Sprint(m.Port)))
	if err != nil {
		return fmt.Errorf("member %s: fault link on advertise_port %d: %w", m.Name, m.AdvertisePort, err)
	}
	l := &memberLinks{pg: pg}
	for _, ep := range s.d.Etcd.Endpoints {
		target, err := endpointHostPort(ep)
		if err != nil {
			l.close()
			return err
		}
		el, err := faultlink.Listen("127.0.0.1:0", target)
		if err != nil {
			l.close()
			return fmt.Errorf("member %s: fault link to etcd: %w", m.Name, err)
		}
		l.etcd = append(l.etcd, el)
	}
	s.mu.Lock()
	s.links[m.Name] = l
	s.mu.Unlock()
	return nil
}

func (s *Supervisor) closeLinks() {
	s.mu.Lock()
	links := s.links
	s.links = map[string]*memberLinks{}
	s.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// healAll lets everything through (shutdown: the primary must reach its
// replicas to stop cleanly).
func (s *Supervisor) healAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		l.heal()
	}
}

// agentEnv is what member name's agent gets on top of our environment: its
// etcd endpoints through its links.
func (s *Supervisor) agentEnv(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.links[name]; ok && len(l.etcd) > 0 {
		return []string{config.EnvPrefix + "ETCD_ENDPOINTS=" + l.etcdEndpoints()}
	}
	return nil
}

// applyFaults carries out the faults drills ask for in etcd, until ctx
// ends. A fault asked for a member without links is reported and ignored;
// a member's fault that changes mode is healed, then the new one applied.
func (s *Supervisor) applyFaults(ctx context.Context) {
	active := map[string]store.Fault{}
	for faults := range s.st.WatchFaults(ctx) {
		s.mu.Lock()
		links := s.links
		s.mu.Unlock()
		// Healed first (gone, or changed): then what is asked now.
		for name, f := range active {
			if now, still := faults[name]; still && now == f {
				continue
			}
			delete(active, name)
			if f.Mode == store.FaultDown {
				s.bringUp(name)
				s.faultEvent(ctx, cluster.EventMemberRestored, name, name+" restarting")
				continue
			}
			if l, ok := links[name]; ok {
				l.heal()
			}
			s.faultEvent(ctx, "healed", name, name+" reachable again")
		}
		for name, f := range faults {
			if _, ok := active[name]; ok {
				continue
			}
			switch f.Mode {
			case store.FaultDown:
				if !s.bringDown(name) {
					s.printf("fault %s on %s asked by %s: this holdfast up does not run the member; ignored", f.Mode, name, f.By)
					continue
				}
				s.faultEvent(ctx, cluster.EventMemberDown, name, fmt.Sprintf("%s down: agent and PostgreSQL killed, held down and cut off (asked by %s)", name, f.By))
			default:
				l, ok := links[name]
				if !ok {
					s.printf("fault %s on %s asked by %s: the member has no fault link (set advertise_port); ignored", f.Mode, name, f.By)
					continue
				}
				l.apply(f)
				kind := "partitioned"
				if f.Mode == store.FaultSlow {
					kind = "slowed"
				}
				s.faultEvent(ctx, kind, name, faultMessage(name, f))
			}
			active[name] = f
		}
	}
}

func (s *Supervisor) faultEvent(ctx context.Context, kind, member, msg string) {
	if !s.cfg.QuietEvents {
		s.printf("fault: %s", msg)
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.st.AppendEvent(ectx, cluster.Event{Time: time.Now(), Kind: kind, Member: member, Message: msg}); err != nil {
		s.log.Warn("record fault event", "err", err)
	}
}
