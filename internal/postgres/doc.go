// Package postgres is the agent's hands on the one local PostgreSQL 15
// instance it owns: it initialises, configures, starts, stops, promotes,
// rewinds and re-clones that instance, and reports what the instance says
// about itself (recovery state, timeline, WAL positions, replicas). It knows
// nothing about etcd or about the cluster; deciding what to do is the caller's
// job.
//
// Layout. DataDir is PGDATA. ConfDir lives outside it and holds the live
// postgresql.conf, pg_hba.conf, pg_ident.conf, the server log and run/ (the
// unix socket directory). pg_basebackup and pg_rewind copy the whole data
// directory from another member, so anything member-specific kept there
// (port, primary_conninfo, the member's own name) would be silently replaced
// by the source member's. The postgresql.conf inside DataDir is a stub holding
// only cluster-wide settings; it is read solely by the single-user crash
// recovery that pg_rewind runs.
//
// Privileges. PostgreSQL refuses to run as root. When the agent runs as root,
// every PostgreSQL binary is executed as Config.OSUser, the directories it
// needs are chowned to that user, and parent directories are checked to be
// traversable by it so that a data directory under /root fails early with a
// message naming the directory that blocks, not with an obscure initdb error.
//
// Risks this package carries:
//   - Losing data by deleting the wrong directory: RemoveData refuses paths
//     that do not look like a data directory this package created.
//   - Two postmasters on one data directory, or a postmaster outliving its
//     agent: Start refuses to run when a live postmaster owns DataDir, and the
//     postmaster gets SIGQUIT through the parent-death signal if the agent dies.
//   - A standby silently becoming a primary: standby.signal is written from
//     Settings before every start, and removed only when the caller writes
//     Settings{Standby: false}.
//   - Leaking secrets: passwords are passed to tools through PGPASSWORD, never
//     on a command line, and config files holding them are mode 0600.
//
// All methods of Instance are safe for concurrent use.
package postgres
