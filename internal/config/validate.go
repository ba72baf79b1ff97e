package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,40}$`)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks every field and the relations between them. The error names
// the field (as written in YAML) and the reason.
func (c Config) Validate() error {
	if !nameRE.MatchString(c.Cluster) {
		return invalid("cluster", "%q must be lower-case letters, digits and '-', starting with a letter", c.Cluster)
	}
	if c.DataDir == "" {
		return invalid("data_dir", "must not be empty")
	}
	if err := c.Etcd.validate(); err != nil {
		return err
	}
	if err := c.Postgres.validate(); err != nil {
		return err
	}
	if err := c.Failover.validate(); err != nil {
		return err
	}
	if c.Agent.LoopInterval.D() < 50*time.Millisecond {
		return invalid("agent.loop_interval", "%s is too short (minimum 50ms)", c.Agent.LoopInterval)
	}
	if c.Agent.StartTimeout.D() < time.Second {
		return invalid("agent.start_timeout", "%s is too short (minimum 1s)", c.Agent.StartTimeout)
	}
	if hb := c.Agent.HeartbeatInterval.D(); hb != 0 && (hb < 10*time.Millisecond || hb > time.Minute) {
		return invalid("agent.heartbeat_interval", "%s is out of range (0 to turn heartbeats off, else 10ms to 1m)", c.Agent.HeartbeatInterval)
	}
	if err := c.Proxy.validate(); err != nil {
		return err
	}
	if err := c.API.validate(); err != nil {
		return err
	}
	if err := c.Buffer.validate(); err != nil {
		return err
	}
	return c.validateRegions()
}

func (a API) validate() error {
	if !a.Enabled {
		return nil
	}
	if _, port, err := net.SplitHostPort(a.Addr); err != nil || port == "" {
		return invalid("api.addr", "%q must be host:port", a.Addr)
	}
	switch {
	case a.WriteMode != "direct" && a.WriteMode != "buffered":
		return invalid("api.write_mode", "%q must be direct or buffered", a.WriteMode)
	case a.Issuer == "":
		return invalid("api.issuer", "must not be empty")
	case a.Audience == "":
		return invalid("api.audience", "must not be empty")
	case a.TokenTTL.D() < time.Minute || a.TokenTTL.D() > 24*time.Hour:
		return invalid("api.token_ttl", "%s must be between 1m and 24h", a.TokenTTL)
	case a.RateLimit < 0:
		return invalid("api.rate_limit", "must not be negative")
	case a.RateLimit > 0 && a.RateBurst < 1:
		return invalid("api.rate_burst", "%d must be positive when rate_limit is set", a.RateBurst)
	case a.RequestTimeout.D() < 100*time.Millisecond:
		return invalid("api.request_timeout", "%s is too short (minimum 100ms)", a.RequestTimeout)
	case a.MaxBodySize < 1024:
		return invalid("api.max_body_size", "%s is below 1kB", a.MaxBodySize)
	}
	return nil
}

func (b Buffer) validate() error {
	if !b.Enabled {
		return nil
	}
	if b.NATSURL == "" {
		if _, port, err := net.SplitHostPort(b.EmbeddedAddr); err != nil || port == "" {
			return invalid("buffer.embedded_addr", "%q must be host:port (or set buffer.nats_url)", b.EmbeddedAddr)
		}
	} else {
		for _, raw := range strings.Split(b.NATSURL, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
				return invalid("buffer.nats_url", "%q must be nats://host:port (comma-separated for a cluster)", raw)
			}
		}
	}
	switch {
	case b.Replicas < 1 || b.Replicas > 5:
		return invalid("buffer.replicas", "%d must be between 1 and 5", b.Replicas)
	case b.MaxKeySize < 1 || b.MaxKeySize > 4096:
		return invalid("buffer.max_key_size", "%s must be between 1B and 4kB", b.MaxKeySize)
	case b.MaxPayloadSize < 1:
		return invalid("buffer.max_payload_size", "must be positive")
	case b.BatchMaxSize < b.MaxPayloadSize+b.MaxKeySize+1024:
		return invalid("buffer.batch_max_size", "%s must hold the largest write (max_payload_size + max_key_size + 1kB)", b.BatchMaxSize)
	case b.BatchMaxSize > 7<<20:
		return invalid("buffer.batch_max_size", "%s exceeds 7MB (the NATS message limit is 8MB)", b.BatchMaxSize)
	case b.BatchMaxWrites < 1:
		return invalid("buffer.batch_max_writes", "%d must be positive", b.BatchMaxWrites)
	case b.MaxAttempts < 1:
		return invalid("buffer.max_attempts", "%d must be positive", b.MaxAttempts)
	case b.RetryBase.D() <= 0:
		return invalid("buffer.retry_base", "must be positive")
	case b.RetryMax.D() < b.RetryBase.D():
		return invalid("buffer.retry_max", "%s must not be below retry_base (%s)", b.RetryMax, b.RetryBase)
	case b.AppendTimeout.D() < 100*time.Millisecond:
		return invalid("buffer.append_timeout", "%s is too short (minimum 100ms)", b.AppendTimeout)
	case b.RedeliveryAfter.D() < time.Second:
		return invalid("buffer.redelivery_after", "%s is too short (minimum 1s)", b.RedeliveryAfter)
	}
	return nil
}

func (p Proxy) validate() error {
	if !p.Enabled {
		return nil
	}
	if p.WriterAddr == "" && p.ReaderAddr == "" {
		return invalid("proxy.writer_addr", "writer_addr and reader_addr are both empty (set proxy.enabled: false to run no proxy)")
	}
	for field, a := range map[string]string{"proxy.writer_addr": p.WriterAddr, "proxy.reader_addr": p.ReaderAddr, "proxy.admin_addr": p.AdminAddr} {
		if a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return invalid(field, "%q must be host:port", a)
		}
	}
	if p.WriterAddr != "" && p.WriterAddr == p.ReaderAddr {
		return invalid("proxy.reader_addr", "must differ from proxy.writer_addr")
	}
	if p.AdminAddr != "" && (p.AdminAddr == p.WriterAddr || p.AdminAddr == p.ReaderAddr) {
		return invalid("proxy.admin_addr", "%s must differ from proxy.writer_addr and proxy.reader_addr", p.AdminAddr)
	}
	switch {
	case p.MaxMessageSize < 1<<10:
		return invalid("proxy.max_message_size", "%s is below 1kB", p.MaxMessageSize)
	case p.MaxClients < 1:
		return invalid("proxy.max_clients", "%d must be positive", p.MaxClients)
	case p.HoldWindow.D() <= 0:
		return invalid("proxy.hold_window", "must be positive")
	case p.MaxWaiting < 1:
		return invalid("proxy.max_waiting", "%d must be positive", p.MaxWaiting)
	case p.ReaderMaxLag < 0:
		return invalid("proxy.reader_max_lag", "must not be negative")
	case p.ConnectTimeout.D() <= 0:
		return invalid("proxy.connect_timeout", "must be positive")
	case p.PoolMode != "session" && p.PoolMode != "transaction":
		return invalid("proxy.pool_mode", "%q must be session or transaction", p.PoolMode)
	case p.PoolSize < 1:
		return invalid("proxy.pool_size", "%d must be positive", p.PoolSize)
	case p.ServerIdleTimeout.D() < 0:
		return invalid("proxy.server_idle_timeout", "must not be negative")
	case p.DrainTimeout.D() < 0 || p.DrainTimeout.D() > p.HoldWindow.D():
		return invalid("proxy.drain_timeout", "%s must be between 0 and hold_window (%s)", p.DrainTimeout, p.HoldWindow)
	case p.ClientIdleTimeout.D() < 0:
		return invalid("proxy.client_idle_timeout", "must not be negative")
	case p.Plaintext != "loopback" && p.Plaintext != "always" && p.Plaintext != "never":
		return invalid("proxy.plaintext", "%q must be loopback, always or never", p.Plaintext)
	case (p.TLSCertFile == "") != (p.TLSKeyFile == ""):
		return invalid("proxy.tls_key_file", "tls_cert_file and tls_key_file are set together")
	}
	return nil
}

func (e Etcd) validate() error {
	if len(e.Endpoints) == 0 {
		return invalid("etcd.endpoints", "at least one endpoint is required")
	}
	for i, ep := range e.Endpoints {
		if ep == "" || strings.ContainsAny(ep, " \t") {
			return invalid(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is not an address", ep)
		}
	}
	if e.Embedded {
		for field, v := range map[string]string{"etcd.client_url": e.ClientURL, "etcd.peer_url": e.PeerURL} {
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "http" || u.Host == "" {
				return invalid(field, "%q must be an http:// URL with host and port", v)
			}
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return invalid(field, "%q must include a port", v)
			}
		}
		if e.ClientURL == e.PeerURL {
			return invalid("etcd.peer_url", "must differ from etcd.client_url")
		}
	}
	if e.DialTimeout.D() <= 0 {
		return invalid("etcd.dial_timeout", "must be positive")
	}
	if e.RequestTimeout.D() <= 0 {
		return invalid("etcd.request_timeout", "must be positive")
	}
	return nil
}

var roleRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (p Postgres) validate() error {
	if p.BinDir == "" {
		return invalid("postgres.bin_dir", "must not be empty")
	}
	for field, v := range map[string]string{
		"postgres.superuser": p.SuperUser, "postgres.replication_user": p.ReplicationUser,
		"postgres.app_user": p.AppUser, "postgres.app_database": p.AppDatabase,
	} {
		if !roleRE.MatchString(v) {
			return invalid(field, "%q must be a lower-case SQL identifier", v)
		}
	}
	if p.SuperUser == p.ReplicationUser || p.AppUser == p.SuperUser || p.AppUser == p.ReplicationUser {
		return invalid("postgres.app_user", "superuser, replication_user and app_user must be three different roles")
	}
	for k := range p.Parameters {
		if !roleRE.MatchString(k) && !strings.Contains(k, ".") {
			return invalid("postgres.parameters."+k, "not a PostgreSQL setting name")
		}
		switch k {
		case "port", "listen_addresses", "unix_socket_directories", "hba_file", "ident_file", "config_file",
			"data_directory", "primary_conninfo", "primary_slot_name", "synchronous_standby_names", "wal_level", "hot_standby":
			return invalid("postgres.parameters."+k, "is managed by holdfast and cannot be set here")
		}
	}
	return nil
}

func (f Failover) validate() error {
	if f.RenewInterval.D() < 50*time.Millisecond {
		return invalid("failover.renew_interval", "%s is too short (minimum 50ms)", f.RenewInterval)
	}
	if f.LeaseTTL.D() < time.Second {
		return invalid("failover.lease_ttl", "%s is too short: etcd grants leases of at least 1s", f.LeaseTTL)
	}
	if f.LeaseTTL.D()%time.Second != 0 {
		return invalid("failover.lease_ttl", "%s must be whole seconds (etcd lease granularity)", f.LeaseTTL)
	}
	if f.LeaseTTL.D() <= 2*f.RenewInterval.D() {
		return invalid("failover.lease_ttl", "%s must exceed twice failover.renew_interval (%s)", f.LeaseTTL, f.RenewInterval)
	}
	if f.DemoteMargin.D() <= 0 || f.DemoteMargin.D() >= f.LeaseTTL.D()-f.RenewInterval.D() {
		return invalid("failover.demote_margin", "%s must be positive and less than lease_ttl - renew_interval (%s)",
			f.DemoteMargin, f.LeaseTTL.D()-f.RenewInterval.D())
	}
	if f.ReportTimeout.D() <= 0 {
		return invalid("failover.report_timeout", "must be positive")
	}
	switch f.SyncMode {
	case "quorum", "relaxed", "off":
	default:
		return invalid("failover.sync_mode", "%q must be one of quorum, relaxed, off", f.SyncMode)
	}
	if f.SyncCount < 1 {
		return invalid("failover.sync_count", "%d must be at least 1", f.SyncCount)
	}
	if f.MaxLagOnSwitchover < 0 {
		return invalid("failover.max_lag_on_switchover", "must not be negative")
	}
	if f.SwitchoverTimeout.D() < time.Second {
		return invalid("failover.switchover_timeout", "%s is too short (minimum 1s)", f.SwitchoverTimeout)
	}
	if f.CanaryInterval.D() < 100*time.Millisecond {
		return invalid("failover.canary_interval", "%s is too short (minimum 100ms)", f.CanaryInterval)
	}
	if f.CanaryFailures < 1 {
		return invalid("failover.canary_failures", "%d must be at least 1", f.CanaryFailures)
	}
	if f.CanaryElectionGrace < 0 {
		return invalid("failover.canary_election_grace", "must not be negative")
	}
	if f.CanaryMaxDataLoss < 0 {
		return invalid("failover.canary_max_data_loss", "must not be negative")
	}
	return nil
}

func (c Config) validateRegions() error {
	if len(c.Regions) == 0 {
		return invalid("regions", "at least one region is required")
	}
	names := map[string]string{}
	addrs := map[string]string{}
	regions := map[string]bool{}
	for ri, r := range c.Regions {
		rf := fmt.Sprintf("regions[%d]", ri)
		if !nameRE.MatchString(r.Name) {
			return invalid(rf+".name", "%q must be lower-case letters, digits and '-', starting with a letter", r.Name)
		}
		if regions[r.Name] {
			return invalid(rf+".name", "region %q is listed twice", r.Name)
		}
		regions[r.Name] = true
		if len(r.Members) == 0 {
			return invalid(rf+".members", "region %q has no members", r.Name)
		}
		for mi, m := range r.Members {
			mf := fmt.Sprintf("%s.members[%d]", rf, mi)
			if !nameRE.MatchString(m.Name) {
				return invalid(mf+".name", "%q must be lower-case letters, digits and '-', starting with a letter", m.Name)
			}
			if prev, ok := names[m.Name]; ok {
				return invalid(mf+".name", "%q is already used by %s", m.Name, prev)
			}
			names[m.Name] = mf
			if m.Host == "" {
				return invalid(mf+".host", "must not be empty")
			}
			if m.Port < 1 || m.Port > 65535 {
				return invalid(mf+".port", "%d is not a TCP port", m.Port)
			}
			addr := net.JoinHostPort(m.Host, fmt.Sprint(m.Port))
			if prev, ok := addrs[addr]; ok {
				return invalid(mf+".port", "%d is used by %s", m.Port, prev)
			}
			addrs[addr] = mf
			if m.HasLink() {
				if m.AdvertisePort < 1 || m.AdvertisePort > 65535 {
					return invalid(mf+".advertise_port", "%d is not a TCP port", m.AdvertisePort)
				}
				aaddr := net.JoinHostPort(m.Host, fmt.Sprint(m.AdvertisePort))
				if prev, ok := addrs[aaddr]; ok {
					return invalid(mf+".advertise_port", "%d is used by %s", m.AdvertisePort, prev)
				}
				addrs[aaddr] = mf + ".advertise_port"
			}
			if m.MetricsPort != 0 {
				if m.MetricsPort < 1 || m.MetricsPort > 65535 {
					return invalid(mf+".metrics_port", "%d is not a TCP port", m.MetricsPort)
				}
				maddr := net.JoinHostPort(m.Host, fmt.Sprint(m.MetricsPort))
				if prev, ok := addrs[maddr]; ok {
					return invalid(mf+".metrics_port", "%d is used by %s", m.MetricsPort, prev)
				}
				addrs[maddr] = mf + ".metrics_port"
			}
		}
	}
	if !regions[c.PrimaryRegion] {
		return invalid("primary_region", "%q is not one of the regions", c.PrimaryRegion)
	}
	return c.validateRegionProxies(addrs)
}

// validateRegionProxies checks the regions' own proxy endpoints: host:port,
// and no address used twice (by another endpoint, or a member).
func (c Config) validateRegionProxies(used map[string]string) error {
	if c.Proxy.Enabled {
		for field, a := range map[string]string{"proxy.writer_addr": c.Proxy.WriterAddr, "proxy.reader_addr": c.Proxy.ReaderAddr, "proxy.admin_addr": c.Proxy.AdminAddr} {
			if a != "" {
				used[a] = field
			}
		}
	}
	for ri, r := range c.Regions {
		if r.Proxy.IsZero() {
			continue
		}
		rf := fmt.Sprintf("regions[%d].proxy", ri)
		if r.Name == c.PrimaryRegion {
			return invalid(rf, "region %q is the primary_region, whose endpoints are proxy.writer_addr, reader_addr and admin_addr", r.Name)
		}
		if r.Proxy.WriterAddr == "" && r.Proxy.ReaderAddr == "" {
			return invalid(rf+".writer_addr", "writer_addr and reader_addr are both empty")
		}
		for _, f := range []struct{ field, addr string }{{"writer_addr", r.Proxy.WriterAddr}, {"reader_addr", r.Proxy.ReaderAddr}, {"admin_addr", r.Proxy.AdminAddr}} {
			if f.addr == "" {
				continue
			}
			if _, port, err := net.SplitHostPort(f.addr); err != nil || port == "" {
				return invalid(rf+"."+f.field, "%q must be host:port", f.addr)
			}
			if prev, ok := used[f.addr]; ok {
				return invalid(rf+"."+f.field, "%s is used by %s", f.addr, prev)
			}
			used[f.addr] = rf + "." + f.field
		}
	}
	return nil
}
