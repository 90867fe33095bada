package dosim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// SpecPath returns the path of the OpenAPI subset kept in the package's
// testdata (found relative to this source file, so it works from any test
// binary built in this module's tree). The spec is not embedded: the sandbox
// binary does not need 460 KB of YAML.
func SpecPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "openapi", "DigitalOcean-dynia-subset.yaml")
}

// SpecValidator checks requests and responses against DO's OpenAPI spec and
// records every violation; it never changes the traffic. Use it through
// Options.Validator or Wrap, then assert Err() == nil in the test.
type SpecValidator struct {
	router routers.Router

	mu           sync.Mutex
	errs         []error
	undocumented map[string]bool
	checked      map[string]int
}

// erratum is a correction applied to the loaded spec where the published
// document contradicts what DO (and godo) really send. Each is listed in
// docs/simulator.md.
type erratum struct {
	what  string
	apply func(doc *openapi3.T) error
}

var specErrata = []erratum{
	{"droplet.next_backup_window is null when backups are off (the allOf wrapper drops nullable)", func(doc *openapi3.T) error {
		return setNullable(doc, "droplet", "next_backup_window")
	}},
	{"droplet_create.ssh_keys: godo sends null when unset", func(doc *openapi3.T) error {
		return setNullable(doc, "droplet_create", "ssh_keys")
	}},
	{"firewall.tags: godo sends null when unset; the allOf wrapper drops existing_tags_array's nullable", func(doc *openapi3.T) error {
		return setNullableAllOf(doc, "firewall", "tags")
	}},
	{"firewall_rule_base requires ports, but DO accepts icmp rules without them (godo omits an empty PortRange); tcp/udp still need ports in the simulator", func(doc *openapi3.T) error {
		s := doc.Components.Schemas["firewall_rule_base"]
		if s == nil || s.Value == nil {
			return errors.New("schema firewall_rule_base not found")
		}
		var req []string
		for _, r := range s.Value.Required {
			if r != "ports" {
				req = append(req, r)
			}
		}
		s.Value.Required = req
		return nil
	}},
}

func setNullable(doc *openapi3.T, schema, prop string) error {
	s := doc.Components.Schemas[schema]
	if s == nil || s.Value == nil {
		return fmt.Errorf("schema %s not found", schema)
	}
	p := s.Value.Properties[prop]
	if p == nil || p.Value == nil {
		return fmt.Errorf("property %s.%s not found", schema, prop)
	}
	p.Value.Nullable = true
	for _, sub := range p.Value.AllOf {
		if sub.Value != nil && sub.Ref == "" {
			sub.Value.Nullable = true
		}
	}
	return nil
}

// setNullableAllOf handles properties nested in the schema's allOf parts.
func setNullableAllOf(doc *openapi3.T, schema, prop string) error {
	s := doc.Components.Schemas[schema]
	if s == nil || s.Value == nil {
		return fmt.Errorf("schema %s not found", schema)
	}
	for _, part := range append(openapi3.SchemaRefs{s}, s.Value.AllOf...) {
		if part.Value == nil {
			continue
		}
		if p := part.Value.Properties[prop]; p != nil && p.Value != nil {
			p.Value.Nullable = true
			for _, sub := range p.Value.AllOf {
				if sub.Value != nil && sub.Ref == "" {
					sub.Value.Nullable = true
				}
			}
			return nil
		}
	}
	return fmt.Errorf("property %s.%s not found", schema, prop)
}

// NewSpecValidator loads the spec at specPath (usually SpecPath()), applies
// the errata and builds a validator.
func NewSpecValidator(specPath string) (*SpecValidator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("dosim: load spec %s: %w", specPath, err)
	}
	for _, e := range specErrata {
		if err := e.apply(doc); err != nil {
			return nil, fmt.Errorf("dosim: apply spec erratum %q: %w", e.what, err)
		}
	}
	// The published examples themselves violate the schemas in places; only
	// the schemas matter here.
	if err := doc.Validate(loader.Context, openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("dosim: validate spec: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("dosim: build spec router: %w", err)
	}
	return &SpecValidator{router: router, undocumented: map[string]bool{}, checked: map[string]int{}}, nil
}

// Errors returns every violation seen so far.
func (v *SpecValidator) Errors() []error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]error(nil), v.errs...)
}

// Err joins every violation (nil when there are none).
func (v *SpecValidator) Err() error { return errors.Join(v.Errors()...) }

// Undocumented lists "METHOD /path/template STATUS" answers whose status the
// spec only covers through its "default" response (e.g. DO's real 422s).
func (v *SpecValidator) Undocumented() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for k := range v.undocumented {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Checked returns how many exchanges were validated per "METHOD /path/template STATUS".
func (v *SpecValidator) Checked() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int{}
	for k, n := range v.checked {
		out[k] = n
	}
	return out
}

func (v *SpecValidator) record(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err)
}

// teeWriter passes a response through while keeping a copy.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (t *teeWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *teeWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	t.body.Write(b)
	return t.ResponseWriter.Write(b)
}

// Wrap returns next with every exchange validated.
func (v *SpecValidator) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			v.record(fmt.Errorf("%s %s: read request body: %w", r.Method, r.URL.Path, err))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))

		// The spec's server is https://api.digitalocean.com: present the
		// request as if sent there.
		vr := r.Clone(context.WithoutCancel(r.Context()))
		u := *r.URL
		u.Scheme, u.Host = "https", "api.digitalocean.com"
		vr.URL, vr.Host, vr.RequestURI = &u, "api.digitalocean.com", ""
		vr.Body = io.NopCloser(bytes.NewReader(body))

		route, params, routeErr := v.router.FindRoute(vr)
		var in *openapi3filter.RequestValidationInput
		if routeErr == nil {
			in = &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
			if err := openapi3filter.ValidateRequest(vr.Context(), in); err != nil {
				v.record(fmt.Errorf("request %s %s: %w", r.Method, r.URL.RequestURI(), err))
			}
		}

		tw := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r)
		if r.Context().Err() != nil {
			return // the client went away; nothing was answered
		}
		if tw.status == 0 {
			tw.status = http.StatusOK
		}

		if routeErr != nil {
			if tw.status < 400 {
				v.record(fmt.Errorf("%s %s answered %d but is not in the spec: %w", r.Method, r.URL.Path, tw.status, routeErr))
			}
			return
		}
		key := r.Method + " " + route.Path + " " + strconv.Itoa(tw.status)
		v.mu.Lock()
		v.checked[key]++
		if route.Operation.Responses.Status(tw.status) == nil {
			v.undocumented[key] = true
		}
		v.mu.Unlock()
		in.Request.Body = io.NopCloser(bytes.NewReader(body))
		rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: tw.status,
			Header: w.Header(), Body: io.NopCloser(bytes.NewReader(tw.body.Bytes())),
			Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(vr.Context(), rin); err != nil {
			v.record(fmt.Errorf("response %d to %s %s: %w", tw.status, r.Method, r.URL.RequestURI(), err))
		}
	})
}
