package schemas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/immeter/immeter/internal/testenv"
)

// What the analyst tries; every one must fail.
const (
	sqlAnalystDrop   = "DROP TABLE schema_migrations"
	sqlAnalystCreate = "CREATE TABLE analyst_scratch (a UInt8) ENGINE = Memory"
	sqlAnalystAlter  = "ALTER TABLE schema_migrations DELETE WHERE version > 0"
	sqlAnalystUnlock = "SET readonly = 0"
	sqlAnalystInsert = "INSERT INTO schema_migrations (version, name, applied_at)"
	sqlCountMigrated = "SELECT count() FROM schema_migrations"
)

// TestAccessUsers starts a private ClickHouse server (.ci/clickhouse.sh on
// free ports) with schemas/access/users.d, passwords filled in, and checks
// that immeter's writer user migrates and writes while the analyst user
// reads but cannot insert, create, alter, drop or lift its readonly.
func TestAccessUsers(t *testing.T) {
	testenv.Private(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users.d")
	if err := os.MkdirAll(users, 0o700); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join("access", "users.d", "immeter-access.xml"))
	if err != nil {
		t.Fatal(err)
	}
	const placeholder = "<password_sha256_hex>REPLACE_WITH_SHA256_HEX<"
	hash := func(pw string) string { s := sha256.Sum256([]byte(pw)); return hex.EncodeToString(s[:]) }
	conf := string(tmpl)
	for _, pw := range []string{"writer-pw", "analyst-pw"} { // in the file's order: immeter, then analyst
		conf = strings.Replace(conf, placeholder, "<password_sha256_hex>"+hash(pw)+"<", 1)
	}
	if strings.Contains(conf, placeholder) {
		t.Fatalf("users.d file has more placeholders than users")
	}
	if err := os.WriteFile(filepath.Join(users, "immeter-access.xml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.StartClickHouse(t, "CLICKHOUSE_USERS_D="+users).Addr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	writer, err := OpenClickHouse(ctx, ClickHouseConfig{Addr: addr, Database: "immeter", Username: "immeter", Password: "writer-pw"})
	if err != nil {
		t.Fatalf("writer user cannot migrate: %v", err)
	}
	defer writer.Close()
	var before uint64
	if err := writer.QueryRow(ctx, sqlCountMigrated).Scan(&before); err != nil || before < 3 {
		t.Fatalf("writer reads schema_migrations: %d rows, %v", before, err)
	}

	analyst, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
		Auth: clickhouse.Auth{Database: "immeter", Username: "analyst", Password: "analyst-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close()
	var n uint64
	if err := analyst.QueryRow(ctx, sqlCountMigrated).Scan(&n); err != nil || n != before {
		t.Fatalf("analyst cannot read: %d rows, %v", n, err)
	}
	for _, stmt := range []string{sqlAnalystDrop, sqlAnalystCreate, sqlAnalystAlter, sqlAnalystUnlock} {
		if err := analyst.Exec(ctx, stmt); err == nil {
			t.Errorf("analyst ran %q", stmt)
		} else if !strings.Contains(err.Error(), "readonly") {
			t.Errorf("analyst's %q refused for another reason than readonly: %v", stmt, err)
		}
	}
	if err := InsertRow(ctx, analyst, sqlAnalystInsert, uint32(9999), "analyst", time.Now().UTC().Truncate(time.Second)); err == nil {
		t.Errorf("analyst inserted a row")
	}
	// A wrong password is refused.
	bad, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
		Auth: clickhouse.Auth{Database: "immeter", Username: "analyst", Password: "writer-pw"}})
	if err == nil {
		if bad.Ping(ctx) == nil {
			t.Errorf("analyst logged in with the writer's password")
		}
		bad.Close()
	}
	if err := writer.QueryRow(ctx, sqlCountMigrated).Scan(&n); err != nil || n != before {
		t.Fatalf("schema_migrations after the analyst's attempts: %d rows, %v; want %d", n, err, before)
	}
}

// sqlExplainAST parses a statement without running it.
const sqlExplainAST = "EXPLAIN AST "

// TestRolesParse: every statement of schemas/access/roles.sql (the access
// of current releases) parses on the embedded current ClickHouse releases:
// a privilege name they do not know is a syntax error there. The
// statements are not run: the embedded engine has no user directories.
func TestRolesParse(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("access", "roles.sql"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var stmts []string
	for _, s := range strings.Split(strings.Join(lines, "\n"), ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	if len(stmts) < 10 {
		t.Fatalf("%d statements in roles.sql", len(stmts))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	create := stmt{key: "schemas.sqlCreateDatabase", text: fmt.Sprintf(sqlCreateDatabase, sqlTestDB)}
	checked := 0
	for _, e := range sqlEngines(ctx, t, create) {
		c, ok := e.(*chdb)
		if !ok {
			continue // 18.16 has no SQL roles
		}
		for _, s := range stmts {
			if _, err := c.query(sqlExplainAST + s); err != nil {
				t.Errorf("%s: %s: %v", c.name(), s, err)
			}
		}
		checked++
	}
	if checked == 0 && testenv.Integration() {
		t.Fatal("no embedded ClickHouse to parse roles.sql")
	}
	t.Logf("%d statements parsed on %d embedded releases", len(stmts), checked)
}
