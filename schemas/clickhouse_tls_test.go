package schemas

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClickHouseTLS starts a private ClickHouse server (.ci/clickhouse.sh on
// free ports) with its native TLS port and connects over it, with the
// certificate verified against the script's CA; without that CA, with the
// wrong server name, and in plaintext to the TLS port, it must fail.
func TestClickHouseTLS(t *testing.T) {
	if os.Getenv("IMMETER_INTEGRATION") != "1" {
		t.Skip("integration test: starts a private ClickHouse server; set IMMETER_INTEGRATION=1 (make test does)")
	}
	dir := t.TempDir()
	port, httpPort, securePort := freePort(t), freePort(t), freePort(t)
	env := append(os.Environ(), "CLICKHOUSE_PORT="+port, "CLICKHOUSE_HTTP_PORT="+httpPort,
		"CLICKHOUSE_SECURE_PORT="+securePort, "IMMETER_RUN_DIR="+dir, "CLICKHOUSE_USERS_D=")
	script := func(action string) error {
		cmd := exec.Command("bash", filepath.Join("..", ".ci", "clickhouse.sh"), action)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf(".ci/clickhouse.sh %s: %s", action, out)
		}
		return err
	}
	t.Cleanup(func() { script("stop") })
	if err := script("start"); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "clickhouse", "tls", "ca.pem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	good := ClickHouseConfig{Addr: "127.0.0.1:" + securePort, Database: "immeter", Username: "default", TLS: true, TLSCAFile: ca}
	conn, err := OpenClickHouse(ctx, good)
	if err != nil {
		t.Fatalf("over TLS with the CA: %v", err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, sqlCountMigrated).Scan(&n); err != nil || n < 3 {
		t.Fatalf("migrations over TLS: %d, %v", n, err)
	}
	conn.Close()

	f := func(name string, tune func(*ClickHouseConfig), want string) {
		t.Helper()
		c := good
		tune(&c)
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		conn, err := OpenClickHouse(cctx, c)
		if err == nil {
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: unexpected result; got %v; want an error containing %q", name, err, want)
		}
		t.Logf("%s: %v", name, err)
	}
	f("unknown CA", func(c *ClickHouseConfig) { c.TLSCAFile = "" }, "certificate signed by unknown authority")
	f("wrong server name", func(c *ClickHouseConfig) { c.TLSServerName = "clickhouse.example" }, "not clickhouse.example")
	f("plaintext to the TLS port", func(c *ClickHouseConfig) { c.TLS, c.TLSCAFile = false, "" }, "handshake")
	f("TLS to the plaintext port", func(c *ClickHouseConfig) { c.Addr = "127.0.0.1:" + port }, "does not look like a TLS handshake")
}
