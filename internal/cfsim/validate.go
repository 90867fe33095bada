package cfsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// SpecPath is the OpenAPI subset in the package's testdata (found relative
// to this source file; not embedded, the sandbox does not need it).
func SpecPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "openapi", "cloudflare-dns-subset.yaml")
}

// SpecValidator checks every request a client sends and every answer it
// gets against the spec subset, recording violations; it never changes the
// traffic. Use Transport in a client's http.Client and assert Err() == nil.
type SpecValidator struct {
	router routers.Router

	mu      sync.Mutex
	errs    []error
	checked int
}

// NewSpecValidator loads the spec at path with its server URL replaced by
// baseURL (the simulator's URL + APIPrefix).
func NewSpecValidator(path, baseURL string) (*SpecValidator, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("cfsim: load spec: %w", err)
	}
	doc.Servers = openapi3.Servers{{URL: baseURL}}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("cfsim: spec: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("cfsim: spec router: %w", err)
	}
	return &SpecValidator{router: r}, nil
}

// Err joins every violation seen.
func (v *SpecValidator) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return errors.Join(v.errs...)
}

// Checked is how many exchanges were validated.
func (v *SpecValidator) Checked() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checked
}

func (v *SpecValidator) fail(err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

// Transport wraps base (nil: http.DefaultTransport) with validation.
func (v *SpecValidator) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return rtFunc(func(req *http.Request) (*http.Response, error) {
		var reqBody []byte
		if req.Body != nil {
			reqBody, _ = io.ReadAll(req.Body)
			_ = req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		op := req.Method + " " + req.URL.Path
		route, params, err := v.router.FindRoute(req)
		if err != nil {
			v.fail(fmt.Errorf("%s: not in the spec: %w", op, err))
			return base.RoundTrip(req)
		}
		check := req.Clone(req.Context())
		check.Body = io.NopCloser(bytes.NewReader(reqBody))
		in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			v.fail(fmt.Errorf("%s: request: %w", op, err))
		}
		resp, err := base.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
			Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
			v.fail(fmt.Errorf("%s: response %d: %w", op, resp.StatusCode, err))
		}
		v.mu.Lock()
		v.checked++
		v.mu.Unlock()
		return resp, nil
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
