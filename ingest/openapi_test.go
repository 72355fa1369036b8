package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

const openAPIPath = "../schemas/openapi.yaml"

// openAPIDoc is the part of schemas/openapi.yaml the tests check.
type openAPIDoc struct {
	OpenAPI string `yaml:"openapi"`
	Paths   map[string]map[string]struct {
		Parameters []struct {
			Name     string `yaml:"name"`
			In       string `yaml:"in"`
			Required bool   `yaml:"required"`
		} `yaml:"parameters"`
		Responses map[string]any `yaml:"responses"`
	} `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required   []string            `yaml:"required"`
			Properties map[string]any      `yaml:"properties"`
			AllOf      []map[string]string `yaml:"allOf"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

var loadOpenAPI = sync.OnceValues(func() (*openAPIDoc, error) {
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		return nil, err
	}
	var d openAPIDoc
	if err := yaml.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	return &d, nil
})

// loadSpec reads schemas/openapi.yaml with kin-openapi, resolving
// event.schema.json from the file beside it.
var loadSpec = sync.OnceValues(func() (*openapi3.T, error) {
	l := openapi3.NewLoader()
	l.IsExternalRefsAllowed = true
	return l.LoadFromFile(openAPIPath)
})

// TestOpenAPIValid checks schemas/openapi.yaml against the OpenAPI
// specification (3.1: event.schema.json is draft 2020-12, which 3.0 rejects),
// and that its Event schema is event.schema.json in force.
func TestOpenAPIValid(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIPath, err)
	}
	event := doc.Components.Schemas["Event"].Value
	f := func(e string, valid bool) {
		t.Helper()
		var v any
		if err := json.Unmarshal([]byte(e), &v); err != nil {
			t.Fatal(err)
		}
		if err := event.VisitJSON(v, openapi3.EnableJSONSchema2020()); (err == nil) != valid {
			t.Fatalf("unexpected validation of %s; got error %v; want valid=%v", e, err, valid)
		}
	}
	f(ev(`"type":"login","user":"u1"`), true)
	f(ev(`"type":"message","user":"u1","channel":"c2c","count":2`), true)
	f(ev(`"type":"message","user":"u1","channel":"sms"`), false)
	f(ev(`"type":"login","user":"u1","count":0`), false)
	f(`{"type":"login","user":"u1"}`, false)
}

// documented says whether schemas/openapi.yaml lists status for the route.
func documented(t testing.TB, method, path string, status int) bool {
	t.Helper()
	d, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}
	_, ok := d.Paths[path][strings.ToLower(method)].Responses[strconv.Itoa(status)]
	return ok
}

// TestOpenAPIMatchesHandler checks schemas/openapi.yaml against the gateway:
// the same routes, the auth headers, the response fields, and every
// documented status produced by the handler.
func TestOpenAPIMatchesHandler(t *testing.T) {
	d, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.1.") {
		t.Fatalf("unexpected openapi version %q; want 3.1.x", d.OpenAPI)
	}
	spec, err := loadSpec()
	if err != nil {
		t.Fatalf("loading %s: %v", openAPIPath, err)
	}

	var routes, paths []string
	for _, r := range (&Gateway{}).routes() {
		routes = append(routes, r.method+" "+r.path)
	}
	for path, ops := range d.Paths {
		for method := range ops {
			paths = append(paths, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(routes)
	slices.Sort(paths)
	if !slices.Equal(routes, paths) {
		t.Fatalf("routes differ; handler has %v; openapi.yaml documents %v", routes, paths)
	}

	var headers []string
	for _, p := range d.Paths["/v1/events"]["post"].Parameters {
		if p.In == "header" && p.Required {
			headers = append(headers, p.Name)
		}
	}
	if want := []string{HeaderApp, HeaderTimestamp, HeaderSignature}; !slices.Equal(headers, want) {
		t.Fatalf("unexpected required headers; got %v; want %v", headers, want)
	}

	f := func(schema string, v any) {
		t.Helper()
		var fields, required []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, name)
			if opts != "omitempty" {
				required = append(required, name)
			}
		}
		s := d.Components.Schemas[schema]
		var documented []string
		for name := range s.Properties {
			documented = append(documented, name)
		}
		slices.Sort(fields)
		slices.Sort(documented)
		slices.Sort(required)
		slices.Sort(s.Required)
		if !slices.Equal(fields, documented) || !slices.Equal(required, s.Required) {
			t.Fatalf("schema %s documents %v (required %v); %T has %v (always present %v)", schema, documented, s.Required, v, fields, required)
		}
	}
	f("GatewayResponse", GatewayResponse{})
	f("EventResult", EventResult{})
	event := d.Components.Schemas["Event"]
	if len(event.AllOf) != 1 || event.AllOf[0]["$ref"] != "event.schema.json" {
		t.Fatalf("Event must reference event.schema.json; got %v", event.AllOf)
	}
	if b, err := os.ReadFile("../schemas/event.schema.json"); err != nil || !json.Valid(b) {
		t.Fatalf("event.schema.json: %v", err)
	}

	// Every documented status, produced by the handler.
	k := newFakeKafka(t)
	topic := k.topic(t)
	login := func() []byte { return []byte(ev(`"type":"login","user":"u1"`)) }
	post := func(body []byte) *http.Request { return signedRequest(testApp, testSecrets[testApp], gwNow, body) }
	healthz := func() *http.Request { return httptest.NewRequest(http.MethodGet, "/healthz", nil) }
	up := newTestGateway(t, k.producer(t, topic, nil), nil)
	closed := k.producer(t, topic, nil)
	closed.Close(context.Background())
	down := newTestGateway(t, closed, nil)
	scenarios := map[string]func() (*Gateway, *http.Request){
		"POST /v1/events 202": func() (*Gateway, *http.Request) { return up, post(login()) },
		"POST /v1/events 400": func() (*Gateway, *http.Request) { return up, post([]byte(`{"id":"x"}`)) },
		"POST /v1/events 401": func() (*Gateway, *http.Request) {
			return up, signedRequest(testApp, testSecrets[testApp], gwNow.Add(-time.Hour), login())
		},
		"POST /v1/events 403": func() (*Gateway, *http.Request) {
			return up, signedRequest(otherApp, testSecrets[otherApp], gwNow, login())
		},
		"POST /v1/events 409": func() (*Gateway, *http.Request) {
			body := login()
			if a := serve(t, up, post(body)); a.status != http.StatusAccepted {
				t.Fatalf("first request: %d %s", a.status, a.raw)
			}
			return up, post(body)
		},
		"POST /v1/events 429": func() (*Gateway, *http.Request) {
			limited := newTestGateway(t, k.producer(t, topic, nil), func(c *GatewayConfig) { c.AppBurst = 1 })
			if a := serve(t, limited, post(login())); a.status != http.StatusAccepted {
				t.Fatalf("first request: %d %s", a.status, a.raw)
			}
			return limited, post(login())
		},
		"POST /v1/events 413": func() (*Gateway, *http.Request) {
			return up, post([]byte("[" + strings.Repeat(string(login())+",", 1000) + "{}]"))
		},
		"POST /v1/events 503": func() (*Gateway, *http.Request) { return down, post(login()) },
		"GET /healthz 200":    func() (*Gateway, *http.Request) { return up, healthz() },
		"GET /healthz 503":    func() (*Gateway, *http.Request) { return down, healthz() },
	}
	for path, ops := range d.Paths {
		for method, op := range ops {
			for status := range op.Responses {
				name := strings.ToUpper(method) + " " + path + " " + status
				run, ok := scenarios[name]
				if !ok {
					t.Errorf("%s is documented but no test produces it", name)
					continue
				}
				delete(scenarios, name)
				g, r := run()
				a := serve(t, g, r)
				if strconv.Itoa(a.status) != status {
					t.Errorf("%s: the handler answered %d: %s", name, a.status, a.raw)
				}
				// The answer against the response schema of openapi.yaml.
				mt := spec.Paths.Find(path).GetOperation(strings.ToUpper(method)).Responses.Value(status).Value.Content.Get(a.header.Get("Content-Type"))
				var body any
				if mt == nil {
					t.Errorf("%s: Content-Type %q is not documented", name, a.header.Get("Content-Type"))
				} else if err := json.Unmarshal([]byte(a.raw), &body); err != nil {
					t.Errorf("%s: the answer is not JSON: %v: %s", name, err, a.raw)
				} else if err := mt.Schema.Value.VisitJSON(body, openapi3.EnableJSONSchema2020()); err != nil {
					t.Errorf("%s: the answer does not match openapi.yaml: %v", name, err)
				}
			}
		}
	}
	for name := range scenarios {
		t.Errorf("%s is produced by the handler but not documented", name)
	}
}
