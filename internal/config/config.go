// Package config reads holdfast's deployment configuration: YAML, then
// HOLDFAST_* environment overrides, then validation that names the offending
// field. Every component gets its settings from the one Config so that `up`,
// `agent` and the CLI agree on names, ports and paths.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// Config is the whole deployment.
type Config struct {
	// Cluster names the cluster; it prefixes every key in etcd.
	Cluster string `yaml:"cluster"`
	// DataDir holds every member's data, the embedded etcd and the secrets.
	// Relative paths are resolved against the directory holdfast runs in.
	DataDir string `yaml:"data_dir"`
	// PrimaryRegion is the region whose leader is the writable primary.
	PrimaryRegion string `yaml:"primary_region"`

	Etcd     Etcd     `yaml:"etcd"`
	Postgres Postgres `yaml:"postgres"`
	Failover Failover `yaml:"failover"`
	Agent    Agent    `yaml:"agent"`
	Proxy    Proxy    `yaml:"proxy"`
	API      API      `yaml:"api"`
	Buffer   Buffer   `yaml:"buffer"`
	Regions  []Region `yaml:"regions"`
}

// Etcd says where cluster state lives.
type Etcd struct {
	// Endpoints the agents and the CLI talk to.
	Endpoints []string `yaml:"endpoints"`
	// Embedded makes `holdfast up` run an etcd server itself on ClientURL.
	Embedded bool `yaml:"embedded"`
	// ClientURL and PeerURL are the embedded server's listeners.
	ClientURL string `yaml:"client_url"`
	PeerURL   string `yaml:"peer_url"`
	// DialTimeout bounds connecting to etcd; RequestTimeout bounds each call.
	DialTimeout    Duration `yaml:"dial_timeout"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// Postgres is how members run PostgreSQL.
type Postgres struct {
	// BinDir holds postgres, initdb, pg_basebackup, pg_rewind, pg_controldata.
	BinDir string `yaml:"bin_dir"`
	// OSUser runs PostgreSQL when holdfast runs as root (PostgreSQL refuses root).
	OSUser string `yaml:"os_user"`
	// SuperUser is the database superuser the agents use (password in secrets).
	SuperUser string `yaml:"superuser"`
	// ReplicationUser streams WAL between members (password in secrets).
	ReplicationUser string `yaml:"replication_user"`
	// AppUser and AppDatabase are created by `up` for applications.
	AppUser     string `yaml:"app_user"`
	AppDatabase string `yaml:"app_database"`
	// SecretsDir holds admin.env, app.env and replication.env (mode 0600).
	// Default: <data_dir>/secrets.
	SecretsDir string `yaml:"secrets_dir"`
	// Parameters are extra postgresql.conf settings applied to every member.
	Parameters map[string]string `yaml:"parameters"`
}

// Failover tunes leader leases and promotion.
type Failover struct {
	// LeaseTTL is how long a silent agent keeps its keys: the node-loss
	// detection time. Must exceed 2 x RenewInterval.
	LeaseTTL Duration `yaml:"lease_ttl"`
	// RenewInterval is how often an agent renews its lease.
	RenewInterval Duration `yaml:"renew_interval"`
	// DemoteMargin: a primary that has not renewed its lease stops accepting
	// writes this long before the lease could expire.
	DemoteMargin Duration `yaml:"demote_margin"`
	// ReportTimeout is how long candidates wait for every live member's WAL
	// position after the leader is lost before deciding without it.
	ReportTimeout Duration `yaml:"report_timeout"`
	// SyncMode: quorum (default: commits wait for SyncCount replicas),
	// relaxed (synchronous while a replica is healthy), off (asynchronous).
	SyncMode string `yaml:"sync_mode"`
	// SyncCount is how many synchronous replicas confirm each commit (ANY n).
	SyncCount int `yaml:"sync_count"`
	// MaxLagOnSwitchover: a switchover target further behind is refused.
	MaxLagOnSwitchover ByteSize `yaml:"max_lag_on_switchover"`
	// SwitchoverTimeout bounds a planned switchover end to end.
	SwitchoverTimeout Duration `yaml:"switchover_timeout"`
	// Canary runs, for each standby region, a probe of the primary region
	// that starts a region failover after CanaryFailures consecutive
	// failures, once the primary region's lease has expired.
	Canary         bool     `yaml:"canary"`
	CanaryInterval Duration `yaml:"canary_interval"`
	CanaryFailures int      `yaml:"canary_failures"`
	// CanaryElectionGrace: while members of the primary region still run
	// PostgreSQL, the canary leaves that region this long without a leader
	// to elect one of its own before it fails over to another region.
	CanaryElectionGrace Duration `yaml:"canary_election_grace"`
	// CanaryMaxDataLoss: the canary fails over only when the standby
	// leader lacks at most this much of the old primary's last known WAL
	// (0: nothing may be lost); beyond it an operator decides, with
	// `holdfast region failover --allow-data-loss`.
	CanaryMaxDataLoss ByteSize `yaml:"canary_max_data_loss"`
}

// Agent tunes the member loop.
type Agent struct {
	// LoopInterval is the period of the safety-net loop; watches drive
	// everything else.
	LoopInterval Duration `yaml:"loop_interval"`
	// StartTimeout bounds a PostgreSQL start (crash recovery included).
	StartTimeout Duration `yaml:"start_timeout"`
	// HeartbeatInterval is how often the primary's agent updates the
	// heartbeat row replicas measure their lag in seconds by; replicas'
	// agents read it twice as often. 0 turns heartbeats off.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
}

// Proxy configures the PostgreSQL protocol proxy.
type Proxy struct {
	// Enabled makes `holdfast up` run the proxy.
	Enabled    bool   `yaml:"enabled"`
	WriterAddr string `yaml:"writer_addr"`
	ReaderAddr string `yaml:"reader_addr"`
	// AdminAddr serves the proxy's Prometheus /metrics and /status over
	// HTTP (empty: off).
	AdminAddr string `yaml:"admin_addr"`
	// UsersFile holds "user" "SCRAM-SHA-256$..." lines: the verifiers
	// clients are checked against. Default: <secrets_dir>/proxy-users.txt.
	UsersFile               string   `yaml:"users_file"`
	MaxMessageSize          ByteSize `yaml:"max_message_size"`
	MaxClients              int      `yaml:"max_clients"`
	HoldWindow              Duration `yaml:"hold_window"`
	MaxWaiting              int      `yaml:"max_waiting"`
	ReaderMaxLag            Duration `yaml:"reader_max_lag"`
	ReaderFallbackToPrimary bool     `yaml:"reader_fallback_to_primary"`
	ConnectTimeout          Duration `yaml:"connect_timeout"`
	// PoolMode is "session" (a client keeps its server connection) or
	// "transaction" (it holds one only during a transaction).
	PoolMode string `yaml:"pool_mode"`
	// PoolSize bounds server connections per (member, user, database).
	PoolSize int `yaml:"pool_size"`
	// ServerIdleTimeout closes pooled server connections idle that long.
	ServerIdleTimeout Duration `yaml:"server_idle_timeout"`
	// ClientIdleTimeout closes client connections idle that long (0: never).
	ClientIdleTimeout Duration `yaml:"client_idle_timeout"`
	// ResolveCommits looks up the outcome of a COMMIT lost with the primary
	// on the new primary instead of answering 08007.
	ResolveCommits bool `yaml:"resolve_commits"`
	// TLSCertFile and TLSKeyFile serve SSLRequest. Empty: <secrets_dir>/proxy.crt
	// and proxy.key, generated (self-signed) by holdfast up.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// DrainTimeout bounds how long a planned switchover waits for the
	// transactions in flight through the proxy to finish.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Plaintext says which clients may skip TLS: "loopback", "always", "never".
	Plaintext string `yaml:"plaintext"`
}

// API configures the HTTP server `holdfast up` runs: durable-write ingest
// and write status, buffer administration, metrics.
type API struct {
	Enabled bool   `yaml:"enabled"`
	Addr    string `yaml:"addr"`
	// AdminTokenFile holds the bearer token the administration routes
	// (buffer status, dead-letter queue) require. Default:
	// <secrets_dir>/api-admin-token, generated by holdfast up.
	AdminTokenFile string `yaml:"admin_token_file"`
	// ClientsFile holds the OAuth2 clients (hashed secrets); KeysFile the
	// token signing keys. Defaults: <secrets_dir>/api-clients.yaml and
	// <secrets_dir>/api-signing-keys.json, created by holdfast up.
	ClientsFile string `yaml:"clients_file"`
	KeysFile    string `yaml:"keys_file"`
	// Issuer and Audience go into (and are checked in) every token.
	Issuer   string   `yaml:"issuer"`
	Audience string   `yaml:"audience"`
	TokenTTL Duration `yaml:"token_ttl"`
	// WriteMode is direct (through the proxy writer) or buffered (through
	// the durable buffer); ?mode= overrides it per request.
	WriteMode string `yaml:"write_mode"`
	// RateLimit is requests per second per client (0: off), RateBurst
	// its bucket.
	RateLimit      float64  `yaml:"rate_limit"`
	RateBurst      int      `yaml:"rate_burst"`
	RequestTimeout Duration `yaml:"request_timeout"`
	MaxBodySize    ByteSize `yaml:"max_body_size"`
	// AccessLog is a file getting one JSON line per request ("": none).
	// holdfast up defaults it to <data_dir>/logs/api-access.log.
	AccessLog string `yaml:"access_log"`
}

// Buffer configures the durable write buffer (NATS JetStream).
type Buffer struct {
	Enabled bool `yaml:"enabled"`
	// NATSURL is an external NATS cluster; empty: holdfast up embeds a
	// NATS server on EmbeddedAddr with its files under <data_dir>/nats.
	NATSURL      string `yaml:"nats_url"`
	EmbeddedAddr string `yaml:"embedded_addr"`
	// Replicas of the streams (3 on an external cluster of 3 or more).
	Replicas        int      `yaml:"replicas"`
	MaxKeySize      ByteSize `yaml:"max_key_size"`
	MaxPayloadSize  ByteSize `yaml:"max_payload_size"`
	MaxAttempts     int      `yaml:"max_attempts"`
	RetryBase       Duration `yaml:"retry_base"`
	RetryMax        Duration `yaml:"retry_max"`
	BatchMaxWrites  int      `yaml:"batch_max_writes"`
	BatchMaxSize    ByteSize `yaml:"batch_max_size"`
	AppendTimeout   Duration `yaml:"append_timeout"`
	RedeliveryAfter Duration `yaml:"redelivery_after"`
}

// Region is a group of members; one region holds the primary.
type Region struct {
	Name string `yaml:"name"`
	// Proxy is the region's own proxy endpoints: clients in the region
	// write through its writer (to the global primary, held during any
	// change) and read from its reader (the region's replicas). The
	// primary_region's endpoints are proxy.writer_addr, reader_addr and
	// admin_addr; a region without either runs no proxy of its own.
	Proxy   RegionProxy `yaml:"proxy,omitempty"`
	Members []Member    `yaml:"members"`
}

// RegionProxy is a region's proxy endpoints.
type RegionProxy struct {
	WriterAddr string `yaml:"writer_addr,omitempty"`
	ReaderAddr string `yaml:"reader_addr,omitempty"`
	AdminAddr  string `yaml:"admin_addr,omitempty"`
}

// IsZero says whether no endpoint is set.
func (p RegionProxy) IsZero() bool { return p == RegionProxy{} }

// RegionProxy is region's proxy endpoints; ok is false when the region
// has none of its own. It does not look at proxy.enabled.
func (c Config) RegionProxy(region string) (RegionProxy, bool) {
	if region == c.PrimaryRegion {
		return RegionProxy{WriterAddr: c.Proxy.WriterAddr, ReaderAddr: c.Proxy.ReaderAddr, AdminAddr: c.Proxy.AdminAddr}, true
	}
	for _, r := range c.Regions {
		if r.Name == region && !r.Proxy.IsZero() {
			return r.Proxy, true
		}
	}
	return RegionProxy{}, false
}

// Member is one PostgreSQL instance and its agent.
type Member struct {
	Name string `yaml:"name"`
	Zone string `yaml:"zone"`
	// Host is the address PostgreSQL listens on and others reach it by.
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// AdvertisePort, when set, is the port others reach PostgreSQL by
	// instead of Port: a port forward, or the fault-injecting link
	// `holdfast up` runs in front of the member so that a drill can
	// partition it (every advertise_port that differs from port gets one).
	AdvertisePort int `yaml:"advertise_port,omitempty"`
	// MetricsPort serves the agent's Prometheus metrics on Host (0: off).
	MetricsPort int `yaml:"metrics_port"`
	// DataDir overrides <data_dir>/members/<name>.
	DataDir string `yaml:"data_dir,omitempty"`
}

// PrimaryRegionOnly drops every region but the primary one (`holdfast up
// --single-region`).
func (c *Config) PrimaryRegionOnly() {
	var keep []Region
	for _, r := range c.Regions {
		if r.Name == c.PrimaryRegion {
			keep = append(keep, r)
		}
	}
	c.Regions = keep
}

// ReachPort is the port others connect to: AdvertisePort when set, else Port.
func (m Member) ReachPort() int {
	if m.AdvertisePort != 0 {
		return m.AdvertisePort
	}
	return m.Port
}

// HasLink reports whether the member sits behind a link of its own
// (AdvertisePort set and different from Port).
func (m Member) HasLink() bool { return m.AdvertisePort != 0 && m.AdvertisePort != m.Port }

// Default returns the configuration `holdfast up` uses with no config file:
// cluster demo, region home, three members on 15432-15434.
func Default() Config {
	return Config{
		Cluster:       "demo",
		DataDir:       "holdfast-data",
		PrimaryRegion: "home",
		Etcd: Etcd{
			Endpoints:      []string{"127.0.0.1:2379"},
			Embedded:       true,
			ClientURL:      "http://127.0.0.1:2379",
			PeerURL:        "http://127.0.0.1:2380",
			DialTimeout:    Duration(2e9),
			RequestTimeout: Duration(2e9),
		},
		Postgres: Postgres{
			BinDir:          "/usr/lib/postgresql/15/bin",
			OSUser:          "postgres",
			SuperUser:       "postgres",
			ReplicationUser: "replicator",
			AppUser:         "app",
			AppDatabase:     "app",
			Parameters:      map[string]string{},
		},
		Failover: Failover{
			LeaseTTL:            Duration(2e9),
			RenewInterval:       Duration(400e6),
			DemoteMargin:        Duration(500e6),
			ReportTimeout:       Duration(1e9),
			SyncMode:            "quorum",
			SyncCount:           1,
			MaxLagOnSwitchover:  16 << 20,
			SwitchoverTimeout:   Duration(30e9),
			Canary:              true,
			CanaryInterval:      Duration(10e9),
			CanaryFailures:      3,
			CanaryElectionGrace: Duration(30e9),
			CanaryMaxDataLoss:   64 << 20,
		},
		Agent: Agent{
			LoopInterval:      Duration(1e9),
			StartTimeout:      Duration(120e9),
			HeartbeatInterval: Duration(100e6),
		},
		Proxy: Proxy{
			Enabled:                 true,
			WriterAddr:              "127.0.0.1:6432",
			ReaderAddr:              "127.0.0.1:6433",
			AdminAddr:               "127.0.0.1:6434",
			MaxMessageSize:          64 << 20,
			MaxClients:              20000,
			HoldWindow:              Duration(30e9),
			MaxWaiting:              10000,
			ReaderMaxLag:            Duration(1e9),
			ReaderFallbackToPrimary: true,
			ConnectTimeout:          Duration(5e9),
			PoolMode:                "session",
			PoolSize:                20,
			ServerIdleTimeout:       Duration(600e9),
			ResolveCommits:          true,
			DrainTimeout:            Duration(5e9),
			Plaintext:               "loopback",
		},
		API: API{
			Enabled:        true,
			Addr:           "127.0.0.1:8080",
			Issuer:         "holdfast",
			Audience:       "holdfast-api",
			TokenTTL:       Duration(3600e9),
			WriteMode:      "direct",
			RateLimit:      5000,
			RateBurst:      1000,
			RequestTimeout: Duration(15e9),
			MaxBodySize:    64 << 10,
		},
		Buffer: Buffer{
			Enabled:         true,
			EmbeddedAddr:    "127.0.0.1:4222",
			Replicas:        1,
			MaxKeySize:      200,
			MaxPayloadSize:  64 << 10,
			MaxAttempts:     25,
			RetryBase:       Duration(50e6),
			RetryMax:        Duration(5e9),
			BatchMaxWrites:  1024,
			BatchMaxSize:    1 << 20,
			AppendTimeout:   Duration(10e9),
			RedeliveryAfter: Duration(30e9),
		},
		Regions: []Region{{
			Name: "home",
			Members: []Member{
				{Name: "home-a", Zone: "a", Host: "127.0.0.1", Port: 15432, AdvertisePort: 16432, MetricsPort: 19432},
				{Name: "home-b", Zone: "b", Host: "127.0.0.1", Port: 15433, AdvertisePort: 16433, MetricsPort: 19433},
				{Name: "home-c", Zone: "c", Host: "127.0.0.1", Port: 15434, AdvertisePort: 16434, MetricsPort: 19434},
			},
		}, {
			Name:  "away",
			Proxy: RegionProxy{WriterAddr: "127.0.0.1:6442", ReaderAddr: "127.0.0.1:6443", AdminAddr: "127.0.0.1:6444"},
			Members: []Member{
				{Name: "away-a", Zone: "a", Host: "127.0.0.1", Port: 15435, AdvertisePort: 16435, MetricsPort: 19435},
				{Name: "away-b", Zone: "b", Host: "127.0.0.1", Port: 15436, AdvertisePort: 16436, MetricsPort: 19436},
			},
		}},
	}
}

// ErrInvalid marks validation failures; the CLI exits with code 2 on them.
var ErrInvalid = errors.New("invalid config")

// Parse reads YAML on top of the defaults. Unknown fields are errors, so a
// typo does not silently fall back to a default.
func Parse(data []byte) (Config, error) {
	c := Default()
	// A config that lists regions replaces the default ones entirely.
	c.Regions = nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Regions == nil {
		c.Regions = Default().Regions
	}
	if c.Postgres.Parameters == nil {
		c.Postgres.Parameters = map[string]string{}
	}
	return c, nil
}

// Load reads FILE (or the defaults when path is empty), applies HOLDFAST_*
// environment overrides, resolves paths and validates.
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("%w: read %s: %v", ErrInvalid, path, err)
		}
		if c, err = Parse(data); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := ApplyEnv(&c, environ); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	c.Resolve()
	return c, nil
}

// Resolve makes paths absolute and fills derived defaults (Load calls it;
// callers that build a Config in code call it themselves).
func (c *Config) Resolve() {
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.Postgres.SecretsDir == "" {
		c.Postgres.SecretsDir = filepath.Join(c.DataDir, "secrets")
	} else if abs, err := filepath.Abs(c.Postgres.SecretsDir); err == nil {
		c.Postgres.SecretsDir = abs
	}
	if c.Proxy.UsersFile == "" {
		c.Proxy.UsersFile = filepath.Join(c.Postgres.SecretsDir, "proxy-users.txt")
	} else if abs, err := filepath.Abs(c.Proxy.UsersFile); err == nil {
		c.Proxy.UsersFile = abs
	}
	for _, f := range []struct {
		p    *string
		name string
	}{{&c.Proxy.TLSCertFile, "proxy.crt"}, {&c.Proxy.TLSKeyFile, "proxy.key"}, {&c.API.AdminTokenFile, "api-admin-token"},
		{&c.API.ClientsFile, "api-clients.yaml"}, {&c.API.KeysFile, "api-signing-keys.json"}} {
		if *f.p == "" {
			*f.p = filepath.Join(c.Postgres.SecretsDir, f.name)
		} else if abs, err := filepath.Abs(*f.p); err == nil {
			*f.p = abs
		}
	}
}

// Marshal renders the config as commented-free YAML (see docs/configuration.md
// for what each field means).
func (c Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FindMember returns the member named name and its region.
func (c Config) FindMember(name string) (Member, Region, bool) {
	for _, r := range c.Regions {
		for _, m := range r.Members {
			if m.Name == name {
				return m, r, true
			}
		}
	}
	return Member{}, Region{}, false
}

// MemberNames lists every member in config order.
func (c Config) MemberNames() []string {
	var out []string
	for _, r := range c.Regions {
		for _, m := range r.Members {
			out = append(out, m.Name)
		}
	}
	return out
}

// MemberDir is where a member keeps pgdata/ and conf/.
func (c Config) MemberDir(m Member) string {
	if m.DataDir != "" {
		return m.DataDir
	}
	return filepath.Join(c.DataDir, "members", m.Name)
}
