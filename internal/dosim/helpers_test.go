package dosim

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/digitalocean/godo"
	"golang.org/x/oauth2"
)

// newSim starts a validated simulator and returns it with a godo client for
// token (full scope when the server has no tokens).
func newSim(t *testing.T, opts Options) (*Server, *httptest.Server, *SpecValidator) {
	t.Helper()
	v, err := NewSpecValidator(SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	opts.Validator = v
	s := New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
		if err := v.Err(); err != nil {
			t.Errorf("spec violations:\n%v", err)
		}
	})
	return s, hs, v
}

func godoClient(t *testing.T, hs *httptest.Server, token string) *godo.Client {
	t.Helper()
	oc := oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	c, err := godo.New(oc, godo.SetBaseURL(hs.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newRawSim starts a simulator without the spec validator, for tests that
// deliberately send requests the spec forbids.
func newRawSim(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s := New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs
}
