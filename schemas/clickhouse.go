package schemas

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ClickHouseConfig says where immeter's ClickHouse database is.
type ClickHouseConfig struct {
	// Addr is host:port of the native protocol, e.g. 127.0.0.1:9000; with
	// replicas, a comma-separated list tried in order.
	Addr     string
	Database string // created if missing; default "immeter"
	Username string // default "default"
	Password string
	// TLS connects to the server's secure native port (tcp_port_secure,
	// usually 9440) and verifies its certificate against TLSCAFile (PEM;
	// default the system's roots) for TLSServerName (default the host of
	// Addr).
	TLS           bool
	TLSCAFile     string
	TLSServerName string

	// Cluster names a cluster of the servers' <remote_servers> (one shard,
	// its replicas): the migrations create Replicated*MergeTree tables ON
	// CLUSTER and every connection uses ReplicaSettings. Empty: one server.
	Cluster string
}

// Addrs returns the addresses of Addr.
func (c *ClickHouseConfig) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Validate reports the first bad field, named as in the environment.
func (c *ClickHouseConfig) Validate() error {
	if c.Addr == "" {
		return errors.New("CLICKHOUSE_ADDR: required (host:port of the native protocol)")
	}
	for _, a := range c.Addrs() {
		if _, _, err := splitHostPort(a); err != nil {
			return fmt.Errorf("CLICKHOUSE_ADDR: %w", err)
		}
	}
	if len(c.Addrs()) > 1 && c.Cluster == "" {
		return errors.New("CLICKHOUSE_ADDR: several servers need CLICKHOUSE_CLUSTER (the cluster of their replicas)")
	}
	for _, r := range c.Cluster {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("CLICKHOUSE_CLUSTER: %q: only letters, digits, _ and -", c.Cluster)
		}
	}
	if c.Database == "" {
		return errors.New("CLICKHOUSE_DATABASE: required")
	}
	for _, r := range c.Database {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("CLICKHOUSE_DATABASE: %q: only letters, digits and _", c.Database)
		}
	}
	_, err := c.tlsConfig()
	return err
}

func (c *ClickHouseConfig) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		if c.TLSCAFile != "" || c.TLSServerName != "" {
			return nil, errors.New("CLICKHOUSE_TLS_CA_FILE, CLICKHOUSE_TLS_SERVER_NAME: set, but CLICKHOUSE_TLS is off")
		}
		return nil, nil
	}
	return loadTLS("CLICKHOUSE_TLS", c.TLSCAFile, "", "", c.TLSServerName)
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("%q: want host:port", addr)
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return addr[:i], port, nil
}

// OpenClickHouse connects to ClickHouse, creates the database if needed and
// applies the migrations. Settings a server does not know are not sent.
func OpenClickHouse(ctx context.Context, c ClickHouseConfig) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tlsConf, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	open := func(db string, settings clickhouse.Settings) (driver.Conn, error) {
		return clickhouse.Open(&clickhouse.Options{
			Addr:         c.Addrs(),
			Auth:         clickhouse.Auth{Database: db, Username: c.Username, Password: c.Password},
			TLS:          tlsConf,
			DialTimeout:  5 * time.Second,
			ReadTimeout:  5 * time.Minute,
			MaxOpenConns: 32,
			Settings:     settings,
		})
	}
	boot, err := open("default", nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	defer boot.Close()
	v, err := boot.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	if c.Cluster != "" {
		return openCluster(ctx, c, boot, open, insertSettings(v.Version))
	}
	if err := boot.Exec(ctx, fmt.Sprintf(sqlCreateDatabase, c.Database)); err != nil {
		return nil, fmt.Errorf("clickhouse %s: create database %s: %w", c.Addr, c.Database, err)
	}
	conn, err := open(c.Database, insertSettings(v.Version))
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	if err := Migrate(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// openCluster is OpenClickHouse for replicas (c.Cluster): it checks the
// cluster, creates the database and applies the migrations ON CLUSTER when
// some are missing, and returns a connection with ReplicaSettings (a quorum
// of a majority of the replicas) whose inserts into one table are sent one
// at a time.
func openCluster(ctx context.Context, c ClickHouseConfig, boot driver.Conn,
	open func(string, clickhouse.Settings) (driver.Conn, error), settings clickhouse.Settings) (driver.Conn, error) {
	replicas, err := clusterShape(ctx, boot, c.Cluster)
	if err != nil {
		return nil, err
	}
	known, err := knownSettings(ctx, boot)
	if err != nil {
		return nil, err
	}
	for k, v := range ReplicaSettings(replicas/2+1, known) {
		settings[k] = v
	}
	var dbs uint64
	if err := boot.QueryRow(ctx, sqlDatabaseCount, c.Database).Scan(&dbs); err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	pending := dbs == 0
	if !pending {
		if pending, err = clusterPending(ctx, boot, c.Database); err != nil {
			return nil, err
		}
	}
	if pending {
		if err := boot.Exec(ctx, fmt.Sprintf(sqlCreateDBOn, c.Database, c.Cluster)); err != nil {
			return nil, fmt.Errorf("clickhouse %s: create database %s on cluster %s: %w", c.Addr, c.Database, c.Cluster, err)
		}
	}
	conn, err := open(c.Database, settings)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	if pending {
		if err := migrate(ctx, conn, &ClusterDDL{Cluster: c.Cluster, Database: c.Database}); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &quorumConn{Conn: conn, tables: map[string]*sync.Mutex{}}, nil
}

// insertSettings turns off what would change insert semantics on newer
// servers: each INSERT must be written (and its parts made) before it
// returns, with every row it holds, as 18.16 does.
func insertSettings(v proto.Version) clickhouse.Settings {
	s := clickhouse.Settings{}
	if v.Major > 21 || v.Major == 21 && v.Minor >= 11 {
		s["async_insert"] = 0 // on by default from 26.2
		// On by default in current releases: rows of one INSERT with the same
		// ReplacingMergeTree key are merged before they are written.
		s["optimize_on_insert"] = 0
	}
	if v.Major >= 20 {
		// event_ids is partitioned by day (migration 0016): an insert of
		// ids of more than 100 days (a window longer than that, or 0016's
		// copy of an old table) must not fail on the default limit.
		s["max_partitions_per_insert_block"] = 0
	}
	return s
}

// Migration is one versioned SQL file of schemas/migrations.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations lists the embedded migrations in order.
func Migrations() ([]Migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Migration
	for _, f := range files {
		base := strings.TrimSuffix(strings.TrimPrefix(f, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", f)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, Statements: splitSQL(string(body))})
	}
	return out, nil
}

// splitSQL splits a file into statements at semicolons ending a line, and
// drops comment-only lines.
func splitSQL(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Migrate applies the migrations not yet recorded in schema_migrations.
// Every statement is idempotent, so a migration cut short is applied again.
func Migrate(ctx context.Context, conn driver.Conn) error {
	return migrate(ctx, conn, nil)
}

// migrate is Migrate, with every statement rewritten by cluster when it is
// not nil.
func migrate(ctx context.Context, conn driver.Conn, cluster *ClusterDDL) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	tables := migrationTables(ms)
	rewrite := func(stmt string) (string, error) {
		if cluster == nil {
			return stmt, nil
		}
		return cluster.Rewrite(stmt, tables)
	}
	create, err := rewrite(sqlCreateMigrations)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := conn.Exec(ctx, create); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, sqlAppliedMigrations)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil { // a cut read would apply migrations again
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if applied[uint32(m.Version)] {
			continue
		}
		done := false
		for _, stmt := range m.Statements {
			if q, ok := migrationDone[m.Version]; ok && !done && !reDropIfExists.MatchString(stmt) {
				var n uint64
				if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
					return fmt.Errorf("migrate %04d_%s: %w", m.Version, m.Name, err)
				}
				done = n > 0
			}
			if done && !reDropIfExists.MatchString(stmt) {
				continue
			}
			stmt, err := rewrite(stmt)
			if err != nil {
				return fmt.Errorf("migrate %04d_%s: %w", m.Version, m.Name, err)
			}
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migrate %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		if err := InsertRow(ctx, conn, sqlInsertMigration,
			uint32(m.Version), m.Name, time.Now().UTC().Truncate(time.Second)); err != nil {
			return fmt.Errorf("migrate %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

// migrationDone holds, by version, a query whose count is above 0 once a
// migration that cannot simply run again (a rename, an ADD COLUMN) has
// taken effect; from then on only its DROP … IF EXISTS statements (cleanup)
// run. It is asked before each statement, so that a migration cut short
// after its rename or ALTER is finished, not repeated; two processes
// applying it at the same moment are only less likely to collide (README,
// migration 0016).
var migrationDone = map[int]string{16: sqlEventIDsByDay, 17: sqlDeadLettersEpoch}

var reDropIfExists = regexp.MustCompile(`(?is)^DROP\s+(TABLE|VIEW)\s+IF\s+EXISTS\s`)

// InsertRow inserts one row as a native-protocol block: INSERT … VALUES with
// bound parameters does not work on every server version. insert names the
// table and columns, e.g. "INSERT INTO t (a, b)".
func InsertRow(ctx context.Context, conn driver.Conn, insert string, values ...any) error {
	b, err := conn.PrepareBatch(ctx, insert)
	if err != nil {
		return err
	}
	if err := b.Append(values...); err != nil {
		return err
	}
	return b.Send()
}
