package schemas

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// SQL of the replicated setup (CLICKHOUSE_CLUSTER).
const (
	sqlClusterShards = "SELECT shard_num, count() FROM system.clusters WHERE cluster = ? GROUP BY shard_num"
	sqlKnownSettings = "SELECT name FROM system.settings WHERE name IN ('insert_quorum_parallel', 'async_insert')"
	sqlDatabaseCount = "SELECT count() FROM system.databases WHERE name = ?"
	sqlTableCount    = "SELECT count() FROM system.tables WHERE database = ? AND name = ?"
	sqlAppliedIn     = "SELECT version FROM %s.schema_migrations" // %s: the database
	sqlCreateDBOn    = "CREATE DATABASE IF NOT EXISTS %s ON CLUSTER %s"
)

// ReplicaSettings are the per-connection settings that keep the exactly-once
// design true on replicated tables: an INSERT returns only once quorum
// replicas hold its part, quorum inserts into a table are linearised, and a
// SELECT sees every quorum-written part (it fails on a replica that lacks
// one, and is retried). quorum is the number of replicas an insert must reach.
//
// Insert deduplication is off, as on a single server: 18.16 acknowledges a
// retried block that matches one already inserted without waiting for that
// block's quorum, so an acknowledged write could stay invisible to
// sequentially consistent reads for a while. A repeated row is harmless in
// immeter's tables (README, "Replicas").
func ReplicaSettings(quorum int, known map[string]bool) clickhouse.Settings {
	s := clickhouse.Settings{
		"insert_quorum":                 quorum,
		"insert_quorum_timeout":         60000, // ms; a failed quorum insert is retried by the caller
		"select_sequential_consistency": 1,
		"insert_deduplicate":            0,
	}
	if known["insert_quorum_parallel"] {
		// select_sequential_consistency holds only for linearised quorum inserts.
		s["insert_quorum_parallel"] = 0
	}
	return s
}

// clusterShape reads the cluster's layout from the server's system.clusters:
// the number of replicas of its one shard.
func clusterShape(ctx context.Context, conn driver.Conn, cluster string) (replicas int, err error) {
	rows, err := conn.Query(ctx, sqlClusterShards, cluster)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: read system.clusters: %w", err)
	}
	defer rows.Close()
	shards := 0
	for rows.Next() {
		var shard uint32
		var n uint64
		if err := rows.Scan(&shard, &n); err != nil {
			return 0, fmt.Errorf("clickhouse: read system.clusters: %w", err)
		}
		shards++
		replicas = int(n)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("clickhouse: read system.clusters: %w", err)
	}
	switch {
	case shards == 0:
		return 0, fmt.Errorf("CLICKHOUSE_CLUSTER: %q is not in the server's <remote_servers>", cluster)
	case shards > 1:
		return 0, fmt.Errorf("CLICKHOUSE_CLUSTER: %q has %d shards; immeter supports one shard with replicas", cluster, shards)
	}
	return replicas, nil
}

// knownSettings returns which of the optional settings the server knows.
func knownSettings(ctx context.Context, conn driver.Conn) (map[string]bool, error) {
	rows, err := conn.Query(ctx, sqlKnownSettings)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read system.settings: %w", err)
	}
	defer rows.Close()
	known := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("clickhouse: read system.settings: %w", err)
		}
		known[name] = true
	}
	return known, rows.Err()
}

// clusterPending reports whether the database lacks migrations, read on the
// server conn points at. Distributed DDL waits for every replica, so a start
// with everything applied sends none (and works while a replica is down).
func clusterPending(ctx context.Context, conn driver.Conn, database string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, sqlTableCount, database, "schema_migrations").Scan(&n); err != nil {
		return false, fmt.Errorf("clickhouse: read system.tables: %w", err)
	}
	if n == 0 {
		return true, nil
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(sqlAppliedIn, database))
	if err != nil {
		return false, fmt.Errorf("clickhouse: read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return false, fmt.Errorf("clickhouse: read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("clickhouse: read schema_migrations: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if !applied[uint32(m.Version)] {
			return true, nil
		}
	}
	return false, nil
}

// ClusterDDL rewrites migration statements for a cluster of replicas of one
// shard: every CREATE, ALTER, RENAME and DROP runs ON CLUSTER with the table named in
// its database (but an ALTER … MODIFY ORDER BY, see Rewrite), every *MergeTree engine becomes its Replicated* form with the
// ZooKeeper path /clickhouse/tables/{shard}/<database>/<table> and replica
// {replica} (the servers' <macros>), and the tables a view reads are named
// in the database (distributed DDL runs on the other servers in "default").
// An INSERT … SELECT (a backfill) runs on one replica, named in the database:
// replication carries its rows.
type ClusterDDL struct {
	Cluster, Database string
}

var (
	reCreateTable = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s`)
	reCreateView  = regexp.MustCompile(`(?is)^CREATE\s+(MATERIALIZED\s+)?VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s`)
	reAlterTable  = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+(\w+)\s`)
	reOrderBy     = regexp.MustCompile(`(?is)\bMODIFY\s+ORDER\s+BY\b`)
	reDrop        = regexp.MustCompile(`(?is)^DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?(\w+)(\s|$)`)
	reRename      = regexp.MustCompile(`(?is)^RENAME\s+TABLE\s+(\w+\s+TO\s+\w+(\s*,\s*\w+\s+TO\s+\w+)*)\s*$`)
	reRenamePair  = regexp.MustCompile(`(?is)(\w+)(\s+TO\s+)(\w+)`)
	reInsertFrom  = regexp.MustCompile(`(?is)^INSERT\s+INTO\s+(\w+)\s*\([^)]*\)\s*SELECT\s`)
	reEngine      = regexp.MustCompile(`(?is)ENGINE\s*=\s*(\w*)MergeTree(\s*\(([^)]*)\))?`)
	reFrom        = regexp.MustCompile(`(?i)\b(FROM|JOIN)(\s+)(\w+)\b(\s*[^.(\w]|\s*$)`)
)

// Rewrite returns stmt as it runs on the cluster, or an error naming a
// statement it cannot run there (so a new migration never silently runs on
// one replica only). tables are the tables and views the migrations create.
func (d ClusterDDL) Rewrite(stmt string, tables map[string]bool) (string, error) {
	on := " ON CLUSTER " + d.Cluster
	q := func(name string) string { return d.Database + "." + name }
	switch {
	case reCreateTable.MatchString(stmt):
		m := reCreateTable.FindStringSubmatchIndex(stmt)
		name := stmt[m[4]:m[5]]
		out := stmt[:m[4]] + q(name) + on + stmt[m[5]:]
		e := reEngine.FindStringSubmatchIndex(out)
		if e == nil {
			return "", fmt.Errorf("table %s: only *MergeTree tables can be replicated", name)
		}
		kind := out[e[2]:e[3]]
		if strings.HasPrefix(strings.ToLower(kind), "replicated") {
			return out, nil
		}
		args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", d.Database, name)
		if e[6] >= 0 && strings.TrimSpace(out[e[6]:e[7]]) != "" {
			args += ", " + strings.TrimSpace(out[e[6]:e[7]])
		}
		return out[:e[0]] + "ENGINE = Replicated" + kind + "MergeTree(" + args + ")" + out[e[1]:], nil
	case reCreateView.MatchString(stmt):
		m := reCreateView.FindStringSubmatchIndex(stmt)
		name := stmt[m[6]:m[7]]
		body := reFrom.ReplaceAllStringFunc(stmt[m[7]:], func(s string) string {
			p := reFrom.FindStringSubmatch(s)
			if !tables[p[3]] {
				return s
			}
			return p[1] + p[2] + q(p[3]) + p[4]
		})
		if reEngine.MatchString(body) {
			return "", fmt.Errorf("view %s: a materialized view's engine cannot be replicated by this rewrite", name)
		}
		return stmt[:m[6]] + q(name) + on + body, nil
	case reAlterTable.MatchString(stmt):
		m := reAlterTable.FindStringSubmatchIndex(stmt)
		name := stmt[m[2]:m[3]]
		if reOrderBy.MatchString(stmt) {
			// 18.16's distributed DDL refuses MODIFY ORDER BY ("Unsupported
			// type of ALTER query"). The table is replicated: the ALTER runs
			// on one replica, and ZooKeeper carries the new columns and
			// sorting key to the others (it waits for them; one down takes
			// the change when it starts, but pending migrations need every
			// replica up anyway: CREATE DATABASE … ON CLUSTER comes first).
			if !tables[name] {
				return "", fmt.Errorf("sorting key of %s: not a table of the migrations", name)
			}
			return stmt[:m[2]] + q(name) + stmt[m[3]:], nil
		}
		return stmt[:m[2]] + q(name) + on + stmt[m[3]:], nil
	case reDrop.MatchString(stmt):
		m := reDrop.FindStringSubmatchIndex(stmt)
		return stmt[:m[6]] + q(stmt[m[6]:m[7]]) + on + stmt[m[7]:], nil
	case reRename.MatchString(stmt):
		m := reRename.FindStringSubmatchIndex(stmt)
		pairs := reRenamePair.ReplaceAllString(stmt[m[2]:m[3]], d.Database+".${1}${2}"+d.Database+".${3}")
		return stmt[:m[2]] + pairs + on, nil
	case reInsertFrom.MatchString(stmt):
		// A backfill from another table: it runs on one replica, and
		// replication carries the rows to the others (no ON CLUSTER).
		m := reInsertFrom.FindStringSubmatchIndex(stmt)
		name := stmt[m[2]:m[3]]
		if !tables[name] {
			return "", fmt.Errorf("backfill of %s: not a table of the migrations", name)
		}
		body := reFrom.ReplaceAllStringFunc(stmt[m[3]:], func(s string) string {
			p := reFrom.FindStringSubmatch(s)
			if !tables[p[3]] {
				return s
			}
			return p[1] + p[2] + q(p[3]) + p[4]
		})
		return stmt[:m[2]] + q(name) + body, nil
	}
	first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	return "", fmt.Errorf("cannot run on a cluster: %s", first)
}

// migrationTables lists the tables and views the migrations create.
func migrationTables(ms []Migration) map[string]bool {
	out := map[string]bool{"schema_migrations": true}
	for _, m := range ms {
		for _, s := range m.Statements {
			if p := reCreateTable.FindStringSubmatch(s); p != nil {
				out[p[2]] = true
			} else if p := reCreateView.FindStringSubmatch(s); p != nil {
				out[p[3]] = true
			}
		}
	}
	return out
}

// quorumConn serialises the inserts into each table made through it:
// quorum inserts into one table are linearised, and a second one sent while
// the first waits for its quorum fails ("Another quorum insert has been
// already started"). Inserts from other processes can still meet one in
// flight; the callers retry.
type quorumConn struct {
	driver.Conn
	mu     sync.Mutex
	tables map[string]*sync.Mutex
}

var reInsertTable = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+([\w.]+)`)

func (c *quorumConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	table := query
	if m := reInsertTable.FindStringSubmatch(query); m != nil {
		table = m[1]
	}
	c.mu.Lock()
	l := c.tables[table]
	if l == nil {
		l = &sync.Mutex{}
		c.tables[table] = l
	}
	c.mu.Unlock()
	return &quorumBatch{Batch: b, lock: l}, nil
}

type quorumBatch struct {
	driver.Batch
	lock *sync.Mutex
}

func (b *quorumBatch) Send() error {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.Batch.Send()
}

func (b *quorumBatch) Flush() error {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.Batch.Flush()
}
