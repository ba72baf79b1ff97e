package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPrintedConfigRoundTrips(t *testing.T) {
	out, err := Default().MarshalCommented()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatalf("parse printed config: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, Default())
	}
	for _, want := range []string{"# Lease of each agent", "lease_ttl: 2s", "port: 15434"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("printed config lacks %q", want)
		}
	}
}

func TestEveryFieldDocumented(t *testing.T) {
	var walk func(rt reflect.Type, prefix string)
	walk = func(rt reflect.Type, prefix string) {
		for i := 0; i < rt.NumField(); i++ {
			tag := strings.Split(rt.Field(i).Tag.Get("yaml"), ",")[0]
			p := prefix + tag
			if _, ok := fieldDocs[p]; !ok {
				t.Errorf("field %s has no entry in fieldDocs", p)
			}
			ft := rt.Field(i).Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, p+".")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad cluster name", func(c *Config) { c.Cluster = "Demo!" }, "cluster:"},
		{"duplicate port", func(c *Config) { c.Regions[0].Members[2].Port = 15432 }, "regions[0].members[2].port: 15432 is used by regions[0].members[0]"},
		{"duplicate member", func(c *Config) { c.Regions[0].Members[1].Name = "home-a" }, "regions[0].members[1].name"},
		{"port range", func(c *Config) { c.Regions[0].Members[0].Port = 70000 }, "regions[0].members[0].port: 70000 is not a TCP port"},
		{"advertise port range", func(c *Config) { c.Regions[0].Members[1].AdvertisePort = -1 }, "regions[0].members[1].advertise_port: -1 is not a TCP port"},
		{"advertise port taken", func(c *Config) { c.Regions[0].Members[1].AdvertisePort = 15432 }, "regions[0].members[1].advertise_port: 15432 is used by regions[0].members[0]"},
		{"lease vs renew", func(c *Config) { c.Failover.RenewInterval = Duration(time.Second) }, "failover.lease_ttl: 2s must exceed twice failover.renew_interval"},
		{"fractional lease", func(c *Config) { c.Failover.LeaseTTL = Duration(2500 * time.Millisecond) }, "failover.lease_ttl: 2.5s must be whole seconds"},
		{"sync mode", func(c *Config) { c.Failover.SyncMode = "strict" }, "failover.sync_mode"},
		{"sync count", func(c *Config) { c.Failover.SyncCount = 0 }, "failover.sync_count"},
		{"canary interval", func(c *Config) { c.Failover.CanaryInterval = Duration(time.Millisecond) }, "failover.canary_interval: 1ms is too short"},
		{"canary failures", func(c *Config) { c.Failover.CanaryFailures = 0 }, "failover.canary_failures: 0 must be at least 1"},
		{"canary max data loss", func(c *Config) { c.Failover.CanaryMaxDataLoss = -1 }, "failover.canary_max_data_loss: must not be negative"},
		{"canary election grace", func(c *Config) { c.Failover.CanaryElectionGrace = Duration(-time.Second) }, "failover.canary_election_grace: must not be negative"},
		{"heartbeat interval", func(c *Config) { c.Agent.HeartbeatInterval = Duration(time.Millisecond) }, "agent.heartbeat_interval: 1ms is out of range"},
		{"region proxy taken", func(c *Config) { c.Regions[1].Proxy.ReaderAddr = c.Proxy.WriterAddr }, "regions[1].proxy.reader_addr: 127.0.0.1:6432 is used by proxy.writer_addr"},
		{"region proxy on a member", func(c *Config) { c.Regions[1].Proxy.AdminAddr = "127.0.0.1:15432" }, "regions[1].proxy.admin_addr: 127.0.0.1:15432 is used by regions[0].members[0]"},
		{"region proxy addr", func(c *Config) { c.Regions[1].Proxy.WriterAddr = "6442" }, "regions[1].proxy.writer_addr"},
		{"primary region proxy", func(c *Config) { c.Regions[0].Proxy = c.Regions[1].Proxy; c.Regions[1].Proxy = RegionProxy{} }, "regions[0].proxy: region \"home\" is the primary_region"},
		{"demote margin", func(c *Config) { c.Failover.DemoteMargin = Duration(5 * time.Second) }, "failover.demote_margin"},
		{"primary region", func(c *Config) { c.PrimaryRegion = "mars" }, "primary_region"},
		{"no members", func(c *Config) { c.Regions[0].Members = nil }, "regions[0].members"},
		{"managed parameter", func(c *Config) { c.Postgres.Parameters["port"] = "1" }, "postgres.parameters.port"},
		{"same roles", func(c *Config) { c.Postgres.AppUser = "postgres" }, "postgres.app_user"},
		{"embedded urls", func(c *Config) { c.Etcd.PeerURL = c.Etcd.ClientURL }, "etcd.peer_url"},
		{"no endpoints", func(c *Config) { c.Etcd.Endpoints = nil }, "etcd.endpoints"},
		{"proxy admin addr", func(c *Config) { c.Proxy.AdminAddr = "6434" }, "proxy.admin_addr"},
		{"api addr", func(c *Config) { c.API.Addr = "8080" }, "api.addr"},
		{"api write mode", func(c *Config) { c.API.WriteMode = "async" }, "api.write_mode"},
		{"api token ttl", func(c *Config) { c.API.TokenTTL = Duration(time.Second) }, "api.token_ttl"},
		{"nats url", func(c *Config) { c.Buffer.NATSURL = "http://x:4222" }, "buffer.nats_url"},
		{"buffer replicas", func(c *Config) { c.Buffer.Replicas = 0 }, "buffer.replicas"},
		{"buffer batch too small", func(c *Config) { c.Buffer.MaxPayloadSize = 2 << 20 }, "buffer.batch_max_size"},
		{"buffer retry bounds", func(c *Config) { c.Buffer.RetryMax = Duration(time.Millisecond) }, "buffer.retry_max"},
		{"buffer attempts", func(c *Config) { c.Buffer.MaxAttempts = 0 }, "buffer.max_attempts"},
		{"proxy admin addr is an endpoint", func(c *Config) { c.Proxy.AdminAddr = c.Proxy.WriterAddr }, "proxy.admin_addr: 127.0.0.1:6432 must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Postgres.Parameters = map[string]string{}
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("expected an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	_, err := Parse([]byte("cluster: demo\nfailover:\n  lease_tll: 3s\n"))
	if err == nil || !strings.Contains(err.Error(), "lease_tll") {
		t.Fatalf("want an error naming lease_tll, got %v", err)
	}
	_, err = Parse([]byte("failover:\n  lease_ttl: soon\n"))
	if err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("want a duration error, got %v", err)
	}
}

func TestParseKeepsDefaultsForMissingFields(t *testing.T) {
	c, err := Parse([]byte("cluster: prod\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "prod" || c.Failover.LeaseTTL != Default().Failover.LeaseTTL || len(c.Regions) != len(Default().Regions) {
		t.Fatalf("unexpected %+v", c)
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	err := ApplyEnv(&c, []string{
		"HOLDFAST_FAILOVER_LEASE_TTL=3s",
		"HOLDFAST_ETCD_ENDPOINTS=10.0.0.1:2379, 10.0.0.2:2379",
		"HOLDFAST_ETCD_EMBEDDED=false",
		"HOLDFAST_FAILOVER_SYNC_COUNT=2",
		"HOLDFAST_FAILOVER_MAX_LAG_ON_SWITCHOVER=1MB",
		"PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Failover.LeaseTTL.D() != 3*time.Second || c.Etcd.Embedded || c.Failover.SyncCount != 2 ||
		!reflect.DeepEqual(c.Etcd.Endpoints, []string{"10.0.0.1:2379", "10.0.0.2:2379"}) || c.Failover.MaxLagOnSwitchover != 1<<20 {
		t.Fatalf("overrides not applied: %+v", c)
	}
	for _, bad := range []struct{ env, want string }{
		{"HOLDFAST_FAILOVER_LEASE_TLL=3s", "HOLDFAST_FAILOVER_LEASE_TLL does not match"},
		{"HOLDFAST_FAILOVER_LEASE_TTL=soon", "failover.lease_ttl (from HOLDFAST_FAILOVER_LEASE_TTL)"},
		{"HOLDFAST_ETCD_EMBEDDED=maybe", "etcd.embedded"},
	} {
		c := Default()
		err := ApplyEnv(&c, []string{bad.env})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: want error mentioning %q, got %v", bad.env, bad.want, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
		ok   bool
	}{{"16MB", 16 << 20, true}, {"512kB", 512 << 10, true}, {"100", 100, true}, {"1GB", 1 << 30, true}, {"x", 0, false}, {"-1MB", 0, false}, {"12 ", 0, false}} {
		got, err := ParseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v", tt.in, got, err)
		}
	}
}

// FuzzParse: a config file is user input; no input may panic, and whatever
// parses either validates or fails with ErrInvalid.
func FuzzParse(f *testing.F) {
	def, _ := Default().MarshalCommented()
	for _, s := range []string{string(def), "cluster: x\n", "regions: 3\n", "failover: {lease_ttl: -1s}\n", "{", "postgres:\n  parameters:\n    work_mem: 4MB\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parse error is not ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("validate error is not ErrInvalid: %v", err)
		}
	})
}

func TestCredentialsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/app.env"
	want := Credentials{User: "app", Password: "s3cret-_x", Database: "app"}
	if err := WriteCredentials(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCredentials(path)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCredentials(path); err == nil || !strings.Contains(err.Error(), "must be 0600") {
		t.Fatalf("a world-readable secrets file was accepted: %v", err)
	}
	if err := WriteCredentials(path, Credentials{User: "a b", Password: "x"}); err == nil {
		t.Fatal("a value needing shell quoting was written")
	}
}
