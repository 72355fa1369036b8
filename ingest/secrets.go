package ingest

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/immeter/immeter/schemas"
)

// LoadSecrets reads the gateway's app secrets from a file of lines
// "app=secret": app is the SDKAppID in decimal, secret is the rest of the
// line with surrounding blanks trimmed, used as bytes. Blank lines and lines
// starting with # are skipped. Errors name the line, never the secret. A
// file that its group or others may access is loaded with a warning.
func LoadSecrets(path string) (map[uint32][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: secrets: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		slog.Warn("ingest: secrets file is readable by others: chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	s, err := ParseSecrets(f)
	if err != nil {
		return nil, fmt.Errorf("ingest: secrets %s: %w", path, err)
	}
	return s, nil
}

// ParseSecrets reads secrets in the format of LoadSecrets.
func ParseSecrets(r io.Reader) (map[uint32][]byte, error) {
	secrets := map[uint32][]byte{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		appText, secret, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want app=secret", n)
		}
		appText, secret = strings.TrimSpace(appText), strings.TrimSpace(secret)
		app, err := strconv.ParseUint(appText, 10, 32)
		if err != nil || app < 1 || app > schemas.MaxAppID {
			return nil, fmt.Errorf("line %d: app must be an SDKAppID in 1..%d; got %.20q", n, uint64(schemas.MaxAppID), appText)
		}
		if secret == "" {
			return nil, fmt.Errorf("line %d: app %d: empty secret", n, app)
		}
		if _, dup := secrets[uint32(app)]; dup {
			return nil, fmt.Errorf("line %d: app %d: listed twice", n, app)
		}
		secrets[uint32(app)] = []byte(secret)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return secrets, nil
}
