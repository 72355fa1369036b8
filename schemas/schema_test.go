package schemas

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// corpus returns every input of the decoder's fuzz corpus: the seeds in code
// and the files under testdata/fuzz.
func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	in := map[string][]byte{}
	for i, s := range eventSeeds {
		in["eventSeeds["+strconv.Itoa(i)+"]"] = []byte(s)
	}
	for i, ev := range benchEvents {
		in["benchEvents["+strconv.Itoa(i)+"]"] = []byte(ev.json)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fuzz corpus files: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		header, rest, _ := strings.Cut(string(b), "\n")
		lit, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
		if header != "go test fuzz v1" || !ok || !strings.HasSuffix(lit, ")") {
			continue // a corpus of another argument type
		}
		s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		in[name] = []byte(s)
	}
	return in
}

// schemaAccepts says whether data is an event by event.schema.json, with
// format assertions on. A text that is not UTF-8, or whose strings hold
// unpaired surrogate escapes, is not a JSON text the schema can apply to
// (RFC 8259 section 8, I-JSON): encoding/json, under the validator, would
// change it into another text.
func schemaAccepts(t *testing.T, sch *jsonschema.Schema, data []byte) (bool, string) {
	if !utf8.Valid(data) {
		return false, "not UTF-8"
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return false, "not JSON: " + err.Error()
	}
	if changed(v) && !bytes.Contains(data, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`)) {
		return false, "unpaired surrogate escape (read as U+FFFD)"
	}
	if err := sch.Validate(v); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// changed says whether a decoded JSON value holds U+FFFD in a key or string.
func changed(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, utf8.RuneError)
	case []any:
		for _, x := range v {
			if changed(x) {
				return true
			}
		}
	case map[string]any:
		for k, x := range v {
			if strings.ContainsRune(k, utf8.RuneError) || changed(x) {
				return true
			}
		}
	}
	return false
}

// TestDecoderAgreesWithSchema runs every fuzz-corpus input through
// DecodeEvent and a JSON Schema validator of event.schema.json: both must
// accept or both refuse. The one difference allowed is stated by the
// schema: lengths are bytes, and maxLength counts characters, so the decoder
// alone refuses strings of more than 128 bytes in at most 128 characters.
func TestDecoderAgreesWithSchema(t *testing.T) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(EventSchema))
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://immeter.dev/schemas/event.v1.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	in := corpus(t)
	var accepted, refused, byteLength int
	for name, data := range in {
		_, derr := DecodeEvent(data)
		ok, why := schemaAccepts(t, sch, data)
		switch {
		case ok && derr == nil:
			accepted++
		case !ok && derr != nil:
			refused++
		case ok && strings.Contains(derr.Error(), "too long:") && overLongInBytesOnly(data):
			byteLength++
		case ok:
			t.Errorf("%s: the schema accepts %q; DecodeEvent refuses it: %v", name, data, derr)
		default:
			t.Errorf("%s: DecodeEvent accepts %q; the schema refuses it: %s", name, data, why)
		}
	}
	t.Logf("%d inputs: %d accepted by both, %d refused by both, %d refused by the decoder for bytes beyond 128 in at most 128 characters", len(in), accepted, refused, byteLength)
	if accepted < 5 || refused < 20 || byteLength < 1 {
		t.Fatalf("corpus too thin to mean anything: %d accepted, %d refused, %d byte-length", accepted, refused, byteLength)
	}
}

// overLongInBytesOnly says whether some contract string of the event is
// over 128 bytes and at most 128 characters.
func overLongInBytesOnly(data []byte) bool {
	var w map[string]any
	if json.Unmarshal(data, &w) != nil {
		return false
	}
	for _, f := range []string{"id", "user", "group", "call"} {
		if s, ok := w[f].(string); ok && len(s) > 128 && utf8.RuneCountInString(s) <= 128 {
			return true
		}
	}
	return false
}
