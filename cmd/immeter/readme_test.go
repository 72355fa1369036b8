package main

import (
	"context"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// notSettings are variables the code reads that are not immeter settings,
// so README.md's configuration table does not list them.
var notSettings = map[string]string{
	"USER": "the login name, default of accept-gap --by",
}

// commandArgs are the arguments that make a command register its settings
// and stop at -h; "-h" unless listed.
var commandArgs = map[string][]string{
	"plans": {"import", "-h"},
}

// TestREADMEConfiguration checks the configuration table of README.md
// ("Commands and configuration") against the code: every variable a
// command reads is listed, and every variable listed is read.
func TestREADMEConfiguration(t *testing.T) {
	code := codeVariables(t)
	doc := readmeVariables(t, "../../README.md")
	if len(doc) == 0 {
		t.Fatal(`README.md: no "| ` + "`NAME`" + `" rows in "## Commands and configuration"`)
	}
	for _, name := range sortedKeys(code) {
		if _, ok := doc[name]; !ok {
			t.Errorf("README.md's configuration table does not list %s, read by %s", name, strings.Join(code[name], ", "))
		}
	}
	for _, name := range sortedKeys(doc) {
		if _, ok := code[name]; !ok {
			t.Errorf("README.md's configuration table lists %s, which no command reads", name)
		}
	}
}

// codeVariables returns the environment variables the commands read, each
// with who reads it: the settings of every command in commands, and the
// variables cmd/immeter reads with os.Getenv or os.LookupEnv, but
// notSettings.
func codeVariables(t *testing.T) map[string][]string {
	t.Helper()
	vars := map[string][]string{}
	var made []*settings
	settingsMade = func(r *settings) {
		r.fs.SetOutput(io.Discard) // no usage text in the test's output
		made = append(made, r)
	}
	t.Cleanup(func() { settingsMade = nil })
	for _, name := range sortedKeys(commands) {
		args, ok := commandArgs[name]
		if !ok {
			args = []string{"-h"}
		}
		made = nil
		err := commands[name](context.Background(), args)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("immeter %s %s: %v; want flag.ErrHelp (add the arguments that reach its flags to commandArgs)",
				name, strings.Join(args, " "), err)
		}
		if len(made) != 1 {
			t.Fatalf("immeter %s: made %d sets of settings, want 1", name, len(made))
		}
		for _, s := range made[0].all {
			vars[s.env] = append(vars[s.env], name)
		}
	}
	for name, where := range directVariables(t) {
		if _, ok := notSettings[name]; !ok {
			vars[name] = append(vars[name], where...)
		}
	}
	return vars
}

// directVariables returns the variables the non-test Go files under
// cmd/immeter read with os.Getenv or os.LookupEnv, with the files that do.
// A name that is not a literal fails the test, but in config.go, where the
// settings read theirs.
func directVariables(t *testing.T) map[string][]string {
	t.Helper()
	vars := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "os" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				if path != "config.go" {
					t.Errorf("%s: os.%s of a name that is not a literal: list it here", fset.Position(call.Pos()), sel.Sel.Name)
				}
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			vars[name] = append(vars[name], path+" (os."+sel.Sel.Name+")")
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

// readmeVariables returns the variables of the table rows ("| `NAME`",
// several names separated by commas) of README.md's section "Commands and
// configuration".
func readmeVariables(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = line == "## Commands and configuration"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, cell := range strings.Split(cells[1], ",") {
			cell = strings.TrimSpace(cell)
			name := strings.Trim(cell, "`")
			if len(cell) < 3 || cell != "`"+name+"`" || strings.ContainsAny(name, "` ") {
				t.Errorf("%s:%d: %q: want `NAME`, several separated by commas", path, i+1, cell)
				continue
			}
			if vars[name] {
				t.Errorf("%s:%d: %s listed twice", path, i+1, name)
			}
			vars[name] = true
		}
	}
	return vars
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
