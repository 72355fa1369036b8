package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Server is a Kafka broker or ClickHouse server of the test's own, run by
// .ci/kafka.sh or .ci/clickhouse.sh on free ports in a temporary directory,
// and stopped at the end of the test.
type Server struct {
	Addr string // 127.0.0.1 and the port of its plaintext listener
	Dir  string // its IMMETER_RUN_DIR (the scripts' TLS material is below it)

	t      testing.TB
	script string
	env    []string
}

// StartKafka starts a broker with .ci/kafka.sh on free KAFKA_PORT and
// KAFKA_CONTROLLER_PORT; env adds the script's other settings as NAME=value
// (KAFKA_SASL_SSL_PORT=…).
func StartKafka(t testing.TB, env ...string) *Server {
	t.Helper()
	port := FreePort(t)
	return start(t, "kafka.sh", port, append([]string{"KAFKA_PORT=" + strconv.Itoa(port),
		"KAFKA_CONTROLLER_PORT=" + strconv.Itoa(FreePort(t))}, env...))
}

// StartClickHouse starts a server with .ci/clickhouse.sh on free
// CLICKHOUSE_PORT and CLICKHOUSE_HTTP_PORT; env adds the script's other
// settings as NAME=value (CLICKHOUSE_SECURE_PORT=…, CLICKHOUSE_USERS_D=…).
func StartClickHouse(t testing.TB, env ...string) *Server {
	t.Helper()
	port := FreePort(t)
	return start(t, "clickhouse.sh", port, append([]string{"CLICKHOUSE_PORT=" + strconv.Itoa(port),
		"CLICKHOUSE_HTTP_PORT=" + strconv.Itoa(FreePort(t))}, env...))
}

func start(t testing.TB, script string, port int, env []string) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, t: t,
		script: filepath.Join(Root(t), ".ci", script), env: append([]string{"IMMETER_RUN_DIR=" + dir}, env...)}
	s.Run("start")
	t.Cleanup(func() { s.Run("stop") })
	return s
}

// Run runs the server's script with cmd (start, stop, pause, resume), and
// fails the test with its output if it fails.
func (s *Server) Run(cmd string) {
	s.t.Helper()
	c := exec.Command("bash", s.script, cmd)
	c.Env = append(os.Environ(), s.env...)
	out, err := c.CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", filepath.Base(s.script), cmd, err, out)
	}
	s.t.Logf("%s", bytes.TrimSpace(out))
}

// Root returns the repository's top directory: the nearest directory above
// the test's working directory (its package's) that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback address nothing listens on now.
func FreeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(FreePort(t)) }
