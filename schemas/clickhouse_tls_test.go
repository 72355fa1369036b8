package schemas

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/internal/testenv"
)

// TestClickHouseTLS starts a private ClickHouse server (.ci/clickhouse.sh on
// free ports) with its native TLS port and connects over it, with the
// certificate verified against the script's CA; without that CA, with the
// wrong server name, and in plaintext to the TLS port, it must fail.
func TestClickHouseTLS(t *testing.T) {
	testenv.Private(t)
	secure := testenv.FreeAddr(t)
	_, securePort, _ := net.SplitHostPort(secure)
	srv := testenv.StartClickHouse(t, "CLICKHOUSE_SECURE_PORT="+securePort, "CLICKHOUSE_USERS_D=")
	dir := srv.Dir
	ca := filepath.Join(dir, "clickhouse", "tls", "ca.pem")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	good := ClickHouseConfig{Addr: secure, Database: "immeter", Username: "default", TLS: true, TLSCAFile: ca}
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
	f("TLS to the plaintext port", func(c *ClickHouseConfig) { c.Addr = srv.Addr }, "does not look like a TLS handshake")
}
