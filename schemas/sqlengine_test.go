package schemas

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/shopspring/decimal"

	"github.com/immeter/immeter/internal/testenv"
)

// The ClickHouse engines TestSQL runs statements on: the server at
// CLICKHOUSE_ADDR, reached as immeter reaches it, and embedded ones (chdb).

// result is a statement's column types and rows, as TabSeparated text.
type result struct {
	types []string
	rows  []string
}

func (r *result) String() string {
	return strings.Join(r.types, "\t") + "\n" + strings.Join(r.rows, "\n")
}

type engine interface {
	name() string
	run(ctx context.Context, s stmt) (*result, error)
	close()
}

// sqlEngines starts every engine available and creates the test database
// in each with the sqlCreateDatabase statement. With IMMETER_INTEGRATION=1
// every engine must be there.
func sqlEngines(ctx context.Context, t *testing.T, create stmt) []engine {
	strict := testenv.Integration()
	dir := os.Getenv("CHDB_DIR")
	if dir == "" {
		dir = filepath.Join(testenv.Root(t), ".run", "chdb")
		if d := os.Getenv("IMMETER_RUN_DIR"); d != "" {
			dir = filepath.Join(d, "chdb")
		}
	}
	var out []engine
	for _, v := range []string{"26.9", "24.8"} {
		path := filepath.Join(dir, v)
		if _, err := os.Stat(filepath.Join(path, ".complete")); err != nil {
			if strict {
				t.Fatalf("IMMETER_INTEGRATION=1 but the embedded ClickHouse %s is not in %s: run .ci/chdb.sh (make test does)", v, path)
			}
			t.Logf("embedded ClickHouse %s not installed in %s (.ci/chdb.sh installs it): not checked", v, path)
			continue
		}
		e, err := startChdb(ctx, path, create.text)
		if err != nil {
			t.Fatalf("chdb %s: %v", v, err)
		}
		t.Cleanup(e.close)
		out = append(out, e)
	}
	if _, addr := testenv.Configured(); addr != "" {
		e, err := openServer(ctx, addr, create.text)
		if err != nil {
			t.Fatalf("clickhouse %s: %v", addr, err)
		}
		t.Cleanup(e.close)
		out = append(out, e)
	} else if strict {
		t.Fatal("IMMETER_INTEGRATION=1 but CLICKHOUSE_ADDR is unset")
	}
	if len(out) == 0 {
		t.Skip("no ClickHouse to run the statements on: run .ci/chdb.sh, or set CLICKHOUSE_ADDR")
	}
	return out
}

// sqlLiteral is v as a ClickHouse literal, as clickhouse-go binds it.
func sqlLiteral(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	case time.Time:
		if v.Equal(v.Truncate(24 * time.Hour)) {
			return "'" + v.UTC().Format(time.DateOnly) + "'"
		}
		return "'" + v.UTC().Format(time.DateTime) + "'"
	case decimal.Decimal:
		return v.String()
	case clickhouse.GroupSet:
		parts := make([]string, len(v.Value))
		for i, x := range v.Value {
			parts[i] = sqlLiteral(x)
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice { // an array, as clickhouse-go binds []int32
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = sqlLiteral(rv.Index(i).Interface())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// chdb is an embedded ClickHouse driven by testdata/chdb_session.py.
type chdb struct {
	version string
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
}

func startChdb(ctx context.Context, path, createDB string) (*chdb, error) {
	cmd := exec.CommandContext(ctx, "python3", "-S", "testdata/chdb_session.py")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+path, "TZ=UTC")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e := &chdb{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<20)}
	var hello struct{ Version string }
	line, err := e.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil {
		e.close()
		return nil, fmt.Errorf("start: %v", err)
	}
	e.version = hello.Version
	// What OpenClickHouse sends this version, then the database.
	v, err := parseVersion(e.version)
	if err != nil {
		e.close()
		return nil, err
	}
	setup := []string{createDB, "USE " + sqlTestDB}
	for k, val := range insertSettings(v) {
		setup = append(setup, fmt.Sprintf("SET %s = %v", k, val))
	}
	for _, s := range setup {
		if _, err := e.query(s); err != nil {
			e.close()
			return nil, fmt.Errorf("%s: %v", s, err)
		}
	}
	return e, nil
}

func parseVersion(s string) (proto.Version, error) {
	var v proto.Version
	_, err := fmt.Sscanf(s, "%d.%d.%d", &v.Major, &v.Minor, &v.Patch)
	return v, err
}

func (e *chdb) name() string { return "chdb " + e.version }

func (e *chdb) close() {
	e.in.Close()
	_ = e.cmd.Wait()
}

func (e *chdb) query(sql string) (string, error) {
	req, _ := json.Marshal(map[string]string{"sql": sql})
	if _, err := e.in.Write(append(req, '\n')); err != nil {
		return "", err
	}
	line, err := e.out.ReadBytes('\n')
	if err != nil {
		return "", err
	}
	var resp struct{ Out, Error string }
	if err := json.Unmarshal(line, &resp); err != nil {
		return "", err
	}
	if resp.Error != "" {
		return "", fmt.Errorf("%s", resp.Error)
	}
	b, err := base64.StdEncoding.DecodeString(resp.Out)
	return string(b), err
}

func (e *chdb) run(_ context.Context, s stmt) (*result, error) {
	text := s.text
	if strings.HasPrefix(e.version, "24.") && strings.HasPrefix(strings.ToUpper(text), "DROP DATABASE") {
		// The embedded 24.8 never finishes removing a dropped MergeTree
		// table ("the server is shutting down") once views exist, and DROP
		// DATABASE then waits for it for ever: after migration 0016 drops
		// the old event_ids, it would hang. The session's directory is
		// removed when it ends.
		return nil, nil
	}
	if s.rows != nil {
		var vals []string
		for _, row := range s.rows {
			lits := make([]string, len(row))
			for i, v := range row {
				lits[i] = sqlLiteral(v)
			}
			vals = append(vals, "("+strings.Join(lits, ", ")+")")
		}
		text += " VALUES " + strings.Join(vals, ", ")
	} else {
		parts := strings.Split(text, "?")
		if len(parts)-1 != len(s.args) {
			return nil, fmt.Errorf("%d ? in the statement, %d sample args", len(parts)-1, len(s.args))
		}
		var b strings.Builder
		for i, p := range parts {
			b.WriteString(p)
			if i < len(s.args) {
				b.WriteString(sqlLiteral(s.args[i]))
			}
		}
		text = b.String()
	}
	out, err := e.query(text)
	if err != nil || !s.query() {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("no header in %q", out)
	}
	r := &result{types: strings.Split(lines[1], "\t")}
	for _, l := range lines[2:] {
		vals := strings.Split(l, "\t")
		for i, v := range vals {
			if i < len(r.types) && strings.HasPrefix(r.types[i], "Decimal") {
				if d, err := decimal.NewFromString(v); err == nil {
					vals[i] = d.String()
				}
			}
		}
		r.rows = append(r.rows, strings.Join(vals, "\t"))
	}
	r.sort(s)
	return r, nil
}

// sort puts the rows of a query without ORDER BY in one order.
func (r *result) sort(s stmt) {
	if !strings.Contains(strings.ToUpper(s.text), "ORDER BY") {
		sort.Strings(r.rows)
	}
}

// server is a ClickHouse server reached as immeter reaches it.
type server struct {
	version string
	boot    driver.Conn
	conn    driver.Conn
}

func openServer(ctx context.Context, addr, createDB string) (*server, error) {
	open := func(db string, settings clickhouse.Settings) (driver.Conn, error) {
		return clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}, Settings: settings})
	}
	boot, err := open("default", nil)
	if err != nil {
		return nil, err
	}
	v, err := boot.ServerVersion()
	if err != nil {
		boot.Close()
		return nil, err
	}
	if err := boot.Exec(ctx, createDB); err != nil {
		boot.Close()
		return nil, err
	}
	conn, err := open(sqlTestDB, insertSettings(v.Version))
	if err != nil {
		boot.Close()
		return nil, err
	}
	return &server{version: v.Version.String(), boot: boot, conn: conn}, nil
}

func (e *server) name() string { return "server " + e.version }

func (e *server) close() {
	_ = e.boot.Exec(context.Background(), "DROP DATABASE IF EXISTS "+sqlTestDB)
	e.conn.Close()
	e.boot.Close()
}

func (e *server) run(ctx context.Context, s stmt) (*result, error) {
	switch {
	case s.rows != nil:
		b, err := e.conn.PrepareBatch(ctx, s.text)
		if err != nil {
			return nil, err
		}
		for _, row := range s.rows {
			if err := b.Append(row...); err != nil {
				return nil, err
			}
		}
		return nil, b.Send()
	case !s.query():
		return nil, e.conn.Exec(ctx, s.text, s.args...)
	}
	rows, err := e.conn.Query(ctx, s.text, s.args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cts := rows.ColumnTypes()
	r := &result{}
	for _, ct := range cts {
		r.types = append(r.types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		dest := make([]any, len(cts))
		for i, ct := range cts {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		vals := make([]string, len(dest))
		for i, d := range dest {
			vals[i] = tsvValue(reflect.ValueOf(d).Elem().Interface(), r.types[i])
		}
		r.rows = append(r.rows, strings.Join(vals, "\t"))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	r.sort(s)
	return r, nil
}

// tsvValue is v as ClickHouse writes it in TabSeparated.
func tsvValue(v any, typ string) string {
	switch v := v.(type) {
	case string:
		return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`,
			"\b", `\b`, "\f", `\f`, `'`, `\'`).Replace(v)
	case time.Time:
		if typ == "Date" {
			return v.Format(time.DateOnly)
		}
		return v.UTC().Format(time.DateTime)
	case decimal.Decimal:
		return v.String()
	case clickhouse.GroupSet:
		parts := make([]string, len(v.Value))
		for i, x := range v.Value {
			parts[i] = sqlLiteral(x)
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprint(v)
}
