package cli

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDeployUnresolvableImage: an image the CLI cannot resolve to a digest
// (the registry has no such tag, or does not answer) fails with one line
// naming the registry and the image, and writes nothing: the release the
// nodes run stays as it was.
func TestDeployUnresolvableImage(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("img")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "img", "--region", "sgp1", "--size", "s-1vcpu-1gb")

	// A registry that answers the API check and knows no image (the
	// distribution spec's 404 for an unknown manifest).
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	}))
	defer reg.Close()
	// A port nothing listens on: a registry that does not answer.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	known := strings.TrimPrefix(reg.URL, "http://")

	for _, tc := range []struct {
		name, image string
		want        []string
	}{
		{"unknown tag", known + "/shop:v9", []string{"registry " + known, "has no image", "shop:v9"}},
		{"registry unreachable", closed + "/shop:v1", []string{"at registry " + closed, "shop:v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.state("img")
			r := e.run("app", "deploy", "--name", "img", "--image", tc.image, "--no-wait")
			if r.code != ExitFailure {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, ExitFailure, r.stderr)
			}
			last := strings.TrimSpace(r.stderr)
			last = last[strings.LastIndex(last, "\n")+1:]
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("error %q: want it to contain %q", last, w)
				}
			}
			// The fake nodes keep writing their reports; the state must not move.
			if after := e.state("img"); after.Generation != before.Generation || len(after.App.Releases) != len(before.App.Releases) {
				t.Errorf("state went from generation %d (%d releases) to %d (%d releases) for an image that does not resolve",
					before.Generation, len(before.App.Releases), after.Generation, len(after.App.Releases))
			}
		})
	}
}
