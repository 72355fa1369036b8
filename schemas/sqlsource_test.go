package schemas

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Where TestSQL finds the statements: the sql… consts of the Go code and
// README.md's sql blocks.

// sqlConst is one sql… const of a non-test Go file.
type sqlConst struct {
	key, text string
	pos       token.Position
}

var (
	sqlConstName = regexp.MustCompile(`^(sql|SQL)[A-Z0-9_]`)
	// A string literal that looks like (a piece of) SQL.
	sqlLooking = regexp.MustCompile(`(?is)^\s*(select\s.*\sfrom\s|insert\s+into\s|create\s+(table|view|database|materialized|dictionary)\s|` +
		`alter\s+table\s|drop\s+(table|view|database|dictionary)\s|optimize\s+table\s|truncate\s|rename\s+table\s|` +
		`system\s+(flush|reload|drop|stop|start|sync)\s|show\s+(tables|create|databases)|exists\s+table\s)|` +
		`(?-i:\b(FROM|WHERE|GROUP BY|ORDER BY|VALUES|SETTINGS)\s)`)
)

// sqlConsts parses the non-test Go files under root and returns their sql…
// consts. It fails on a string literal that looks like SQL anywhere else.
func sqlConsts(root string) ([]sqlConst, error) {
	var out []sqlConst
	var bad []string
	type pkgConsts struct {
		exprs map[string]ast.Expr
		sql   []*ast.Ident
	}
	pkgs := map[string]*pkgConsts{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		p := pkgs[pkg]
		if p == nil {
			p = &pkgConsts{exprs: map[string]ast.Expr{}}
			pkgs[pkg] = p
		}
		inConst := map[ast.Node]bool{} // values of sql… consts
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					p.exprs[n.Name] = vs.Values[i]
					if sqlConstName.MatchString(n.Name) {
						p.sql = append(p.sql, n)
						inConst[vs.Values[i]] = true
					}
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if inConst[n] {
				return false
			}
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && sqlLooking.MatchString(s) {
					bad = append(bad, fmt.Sprintf("%s: SQL in a string literal: make it a package-level const named sql… (see schemas/sql_test.go): %.60q",
						fset.Position(lit.Pos()), s))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for pkg, p := range pkgs {
		for _, n := range p.sql {
			text, err := constString(p.exprs, p.exprs[n.Name], 0)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %s: %v", fset.Position(n.Pos()), n.Name, err))
				continue
			}
			out = append(out, sqlConst{key: pkg + "." + n.Name, text: text, pos: fset.Position(n.Pos())})
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("%s", strings.Join(bad, "\n"))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

// constString evaluates a string constant made of literals, other consts of
// the package and +.
func constString(consts map[string]ast.Expr, e ast.Expr, depth int) (string, error) {
	if depth > 20 {
		return "", fmt.Errorf("const too deep")
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			return strconv.Unquote(e.Value)
		}
	case *ast.ParenExpr:
		return constString(consts, e.X, depth+1)
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			x, err := constString(consts, e.X, depth+1)
			if err != nil {
				return "", err
			}
			y, err := constString(consts, e.Y, depth+1)
			return x + y, err
		}
	case *ast.Ident:
		if v, ok := consts[e.Name]; ok {
			return constString(consts, v, depth+1)
		}
	}
	return "", fmt.Errorf("not a string made of literals, consts of the package and +")
}

// readmeQueries returns the statements of README.md's ```sql blocks, with the
// database prefix immeter. dropped (the test's database is the current one).
func readmeQueries(path string) ([]stmt, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []stmt
	blocks := strings.Split(string(b), "```sql\n")
	for _, blk := range blocks[1:] {
		body, _, ok := strings.Cut(blk, "```")
		if !ok {
			return nil, fmt.Errorf("%s: unterminated ```sql block", path)
		}
		for _, s := range splitSQL(body) {
			out = append(out, stmt{key: fmt.Sprintf("README.md query %d", len(out)+1), text: strings.ReplaceAll(s, "immeter.", "")})
		}
	}
	return out, nil
}
