package config

import (
	"bytes"
	"strings"

	"gopkg.in/yaml.v3"
)

// fieldDocs documents every field; `--print-config` writes them as comments
// and TestEveryFieldDocumented keeps the list complete.
var fieldDocs = map[string]string{
	"cluster":        "Name of the cluster; every key in etcd is under /holdfast/<cluster>/.",
	"data_dir":       "Directory for members' data, the embedded etcd and secrets (relative to where holdfast runs).",
	"primary_region": "Region whose leader is the writable primary.",

	"etcd":                 "Where cluster state (members, leader leases, topology, events) lives.",
	"etcd.endpoints":       "etcd client endpoints used by agents and the CLI (env: comma-separated).",
	"etcd.embedded":        "holdfast up runs a single-node etcd itself on client_url.",
	"etcd.client_url":      "Client listener of the embedded etcd.",
	"etcd.peer_url":        "Peer listener of the embedded etcd.",
	"etcd.dial_timeout":    "How long to wait when connecting to etcd.",
	"etcd.request_timeout": "Upper bound of each etcd request.",

	"postgres":                  "How members run PostgreSQL.",
	"postgres.bin_dir":          "Directory of postgres, initdb, pg_basebackup, pg_rewind, pg_controldata.",
	"postgres.os_user":          "OS user that runs PostgreSQL when holdfast runs as root.",
	"postgres.superuser":        "Database superuser used by agents (password in secrets_dir/admin.env).",
	"postgres.replication_user": "Role replicas stream WAL with (password in secrets_dir/replication.env).",
	"postgres.app_user":         "Login role created for applications (password in secrets_dir/app.env).",
	"postgres.app_database":     "Database created for applications, owned by app_user.",
	"postgres.secrets_dir":      "Directory of admin.env, app.env, replication.env (mode 0600). Empty: <data_dir>/secrets.",
	"postgres.parameters":       "Extra postgresql.conf settings for every member (settings holdfast manages are refused).",

	"failover":                       "Leader leases and promotion.",
	"failover.lease_ttl":             "Lease of each agent: a silent node is declared lost after this long. Whole seconds, more than 2 x renew_interval.",
	"failover.renew_interval":        "How often an agent renews its lease.",
	"failover.demote_margin":         "A primary that could not renew stops accepting writes this long before its lease could expire.",
	"failover.report_timeout":        "How long candidates wait for each live member's WAL position after the leader is lost.",
	"failover.sync_mode":             "quorum: commits wait for sync_count replicas (ANY n), always; relaxed: synchronous while a replica is healthy; off: asynchronous (failover may lose commits).",
	"failover.sync_count":            "How many synchronous replicas confirm each commit (the n in ANY n).",
	"failover.max_lag_on_switchover": "A switchover to a replica further behind than this is refused.",
	"failover.canary":                "Run a canary per standby region (holdfast up): it probes the primary region with a real write and read and starts a region failover after canary_failures consecutive failures, once the primary region's lease has expired.",
	"failover.canary_interval":       "Time between two canary probes (each probe may take up to half of it).",
	"failover.canary_failures":       "Consecutive failed probes before the canary acts; any success resets the count.",
	"failover.canary_max_data_loss":  "The canary fails over only when its standby leader lacks at most this much of the old primary's last known WAL (0: nothing may be lost); beyond it an operator decides (holdfast region failover --allow-data-loss).",
	"failover.canary_election_grace": "While members of the primary region still run PostgreSQL, that region is electing a primary of its own: the canary waits this long of continuous leaderlessness before failing over to its region.",
	"failover.switchover_timeout":    "Upper bound of a planned switchover.",

	"agent":                    "The member loop.",
	"agent.loop_interval":      "Period of the agent's safety-net loop; etcd watches and process exits drive everything else.",
	"agent.start_timeout":      "Upper bound of a PostgreSQL start, crash recovery included.",
	"agent.heartbeat_interval": "How often the primary updates the heartbeat row that replicas measure their lag in seconds by (replicas read it twice as often). 0s: off.",

	"proxy":                            "The PostgreSQL protocol proxy: a writer endpoint that follows the primary and holds new work while it changes, and a reader endpoint over replicas.",
	"proxy.enabled":                    "holdfast up runs the proxy.",
	"proxy.writer_addr":                "Writer endpoint (follows the primary). Empty: off.",
	"proxy.reader_addr":                "Reader endpoint (least-loaded healthy replica). Empty: off.",
	"proxy.admin_addr":                 "HTTP address of the proxy's Prometheus /metrics and of /status (read by holdfast proxy status). Empty: off.",
	"proxy.users_file":                 "Verifiers clients authenticate against (\"user\" \"SCRAM-SHA-256$...\" lines). Empty: <secrets_dir>/proxy-users.txt.",
	"proxy.max_message_size":           "Largest message a client may send; larger ones get an error and the connection is closed.",
	"proxy.max_clients":                "Client connections per endpoint.",
	"proxy.hold_window":                "How long new connections wait for a primary during a failover before getting an error.",
	"proxy.max_waiting":                "How many clients may wait for a primary at once.",
	"proxy.reader_max_lag":             "Replicas whose replay is further behind the primary than this (time) serve no reads.",
	"proxy.pool_mode":                  "session: a client keeps one server connection until it leaves. transaction: it holds one only during each transaction (and is pinned to it once it creates session state: SET, LISTEN, temporary tables, session advisory locks, PREPARE, WITH HOLD cursors).",
	"proxy.pool_size":                  "Server connections per member, user and database; clients beyond it wait for one.",
	"proxy.server_idle_timeout":        "Close pooled server connections idle this long (0: never).",
	"proxy.client_idle_timeout":        "Close client connections idle this long outside a transaction (0: never).",
	"proxy.resolve_commits":            "When the primary is lost during a COMMIT, look the transaction up on the new primary and answer COMMIT or a retryable 40001, instead of 08007 (outcome unknown). Costs one extra statement per explicit transaction, sent in the same round trip.",
	"proxy.tls_cert_file":              "Certificate served on SSLRequest. Empty: <secrets_dir>/proxy.crt (self-signed, generated by holdfast up).",
	"proxy.tls_key_file":               "Key of tls_cert_file. Empty: <secrets_dir>/proxy.key.",
	"proxy.drain_timeout":              "During a planned switchover the proxy holds new transactions and waits this long for those in flight to finish before the old primary stops; the old primary's agent waits for every proxy's acknowledgement (plus 2s). Transactions still open then get a retryable 40001.",
	"proxy.plaintext":                  "Which clients may connect without TLS: loopback (clients on 127.0.0.0/8 and ::1), always, never.",
	"proxy.reader_fallback_to_primary": "Send reads to the primary when no replica qualifies.",
	"proxy.connect_timeout":            "Upper bound of opening one server connection.",

	"api":                  "The HTTP server of holdfast up: durable-write ingest (POST /v1/writes, GET /v1/writes/{key}, GET /ingest), buffer administration, Prometheus /metrics.",
	"api.enabled":          "holdfast up runs the HTTP server.",
	"api.addr":             "Address of the HTTP server.",
	"api.clients_file":     "OAuth2 clients of the ToDo API (id, SHA-256 of the secret, allowed scopes). Empty: <secrets_dir>/api-clients.yaml. holdfast api client create adds one.",
	"api.keys_file":        "Ed25519 keys tokens are signed with (the newest signs; older ones still verify). Empty: <secrets_dir>/api-signing-keys.json. holdfast api keys rotate adds one.",
	"api.issuer":           "iss of the tokens issued and accepted.",
	"api.audience":         "aud of the tokens issued and accepted.",
	"api.token_ttl":        "Lifetime of an access token.",
	"api.write_mode":       "direct: ToDo writes go through the proxy writer and answer with the row. buffered: through the durable buffer, answered 202 with the write's key. ?mode= overrides it per request.",
	"api.rate_limit":       "Requests per second per client (token bucket; 429 with Retry-After beyond). 0: no limit.",
	"api.rate_burst":       "Bucket size of the rate limit.",
	"api.request_timeout":  "Bound of one request's database work (503 beyond).",
	"api.max_body_size":    "Largest request body (413 beyond).",
	"api.access_log":       "File receiving one JSON line per request. Empty: holdfast up writes <data_dir>/logs/api-access.log; holdfast api logs none.",
	"api.admin_token_file": "Bearer token required by the administration routes (holdfast buffer status, holdfast dlq). Empty: <secrets_dir>/api-admin-token (generated by holdfast up).",

	"buffer":                  "The durable write buffer: writes are acknowledged once fsynced in NATS JetStream, then committed to PostgreSQL exactly once, whatever the database is doing.",
	"buffer.enabled":          "holdfast up runs the buffer (it needs api.enabled to take writes over HTTP).",
	"buffer.nats_url":         "An external NATS cluster (nats://host:4222,...). Empty: holdfast up embeds a NATS server on embedded_addr, files under <data_dir>/nats.",
	"buffer.embedded_addr":    "Client address of the embedded NATS server.",
	"buffer.replicas":         "Replicas of the JetStream streams: 1 on one host, 3 on an external cluster.",
	"buffer.max_key_size":     "Longest idempotency key accepted.",
	"buffer.max_payload_size": "Largest payload accepted (413 beyond).",
	"buffer.max_attempts":     "Permanent failures (invalid data, constraint violations) after which a write goes to the dead-letter queue. Transient failures never count.",
	"buffer.retry_base":       "First retry delay: after a transient failure (with jitter) and between attempts of a write that failed permanently (doubling).",
	"buffer.retry_max":        "Cap of the retry delays.",
	"buffer.batch_max_writes": "Most writes stored in one JetStream publish (group commit) and applied in one transaction.",
	"buffer.batch_max_size":   "Largest batch, in bytes.",
	"buffer.append_timeout":   "How long a write may wait to be stored before ingest answers 503 (retry with the same key).",
	"buffer.redelivery_after": "A batch a committer took and neither committed nor released (it crashed) goes to another committer after this long.",

	"regions":                        "Regions and their members. The first listed member bootstraps a new cluster.",
	"regions.name":                   "Region name.",
	"regions.members":                "Members of the region.",
	"regions.proxy":                  "The region's own proxy endpoints (writer: the global primary; reader: this region's replicas). The primary_region uses proxy.writer_addr, reader_addr and admin_addr instead.",
	"regions.proxy.writer_addr":      "The region's writer endpoint.",
	"regions.proxy.reader_addr":      "The region's reader endpoint (this region's replicas only).",
	"regions.proxy.admin_addr":       "The region's proxy /metrics and /status.",
	"regions.members.name":           "Member name: unique across the cluster; also the replication slot and application_name.",
	"regions.members.zone":           "Availability zone, informational.",
	"regions.members.host":           "Address PostgreSQL listens on and other members reach it by.",
	"regions.members.port":           "PostgreSQL port.",
	"regions.members.advertise_port": "Port others reach PostgreSQL by when it differs from port (a port forward); holdfast up runs a fault-injecting link there so drills can partition the member. 0: port.",
	"regions.members.metrics_port":   "Port of the agent's Prometheus /metrics on host (0: off).",
	"regions.members.data_dir":       "Overrides <data_dir>/members/<name>.",
}

// MarshalCommented renders the config as YAML with each field's documentation
// as a comment above it.
func (c Config) MarshalCommented() ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(c); err != nil {
		return nil, err
	}
	annotate(&root, "")
	var b bytes.Buffer
	b.WriteString("# holdfast configuration. Every field can be overridden by HOLDFAST_<PATH>,\n# e.g. HOLDFAST_FAILOVER_LEASE_TTL=3s. Check a file with `holdfast config check FILE`.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func annotate(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if doc, ok := fieldDocs[p]; ok && !strings.HasPrefix(path, "postgres.parameters") {
				k.HeadComment = doc
			}
			annotate(v, p)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if i > 0 {
				// Document the first element only; the rest repeat it.
				clearComments(item)
				continue
			}
			annotate(item, path)
		}
	}
}

func clearComments(n *yaml.Node) {
	n.HeadComment = ""
	for _, c := range n.Content {
		clearComments(c)
	}
}
