package cli

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/signing"
)

// TestCorruptStateIsNeverOverwritten: a state object that is truncated,
// hand-broken (valid JSON, an invalid value), of an unknown
// schema_version, or empty makes every command fail with one line naming
// the object and what is wrong with it, before any change: the object
// keeps its bytes, no API call changes anything, no state is created over
// it. Once the object is restored the same commands work again.
func TestCorruptStateIsNeverOverwritten(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("inputs")()
	e.mustRun("node", "create-ha", "--name", "inputs", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "inputs")
	st := e.state("inputs")
	ctx := context.Background()
	key := cluster.StateKey("inputs")
	obj, err := e.bucket.Get(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	good := obj.Body
	standby := st.Nodes[1].ID
	commands := [][]string{
		{"node", "list", "--name", "inputs"},
		{"node", "add", "--name", "inputs"},
		{"node", "remove", "--name", "inputs", "--node", standby, "--yes"},
		{"node", "make-active", "--name", "inputs", "--node", standby},
		{"node", "repair-ha", "--name", "inputs", "--force"},
		{"node", "create-ha", "--name", "inputs", "--region", "sgp1", "--size", "s-1vcpu-1gb"},
		{"cluster", "update", "--name", "inputs", "--admin-cidr", "192.0.2.7/32"},
		{"cluster", "get", "--name", "inputs"},
		{"cluster", "destroy", "--name", "inputs", "--yes"},
		{"app", "deploy", "--name", "inputs", "--image", "registry.example/app@sha256:" + strings.Repeat("a", 64)},
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		// A broken object fails its signature first; a broken document
		// signed with the cluster's key (as an operator's edit resigned,
		// or a newer dynia's state) fails decoding.
		{"truncated", good[:len(good)/2], "state signature"},
		{"empty", []byte{}, "state signature"},
		{"hand-broken", e.signedEdit("inputs", good, `"region": "sgp1"`, `"region": 7`), "region"},
		{"unknown schema_version", e.signedEdit("inputs", good, `"schema_version": 1`, `"schema_version": 99`), `schema_version "99": unsupported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.body, good) {
				t.Fatal("the corruption changed nothing")
			}
			etag, err := e.bucket.Put(ctx, key, tc.body, bucket.Cond{})
			if err != nil {
				t.Fatal(err)
			}
			calls := len(e.sim.Calls())
			for _, args := range commands {
				r := e.run(args...)
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if r.code != ExitFailure || len(lines) != 1 || !strings.Contains(lines[0], key) || !strings.Contains(lines[0], tc.want) {
					t.Errorf("%s on a %s state: exit %d\n%s\nwant exit 1 and one line naming %s and %q", strings.Join(args, " "), tc.name, r.code, r.stderr, key, tc.want)
				}
			}
			obj, err := e.bucket.Get(ctx, key, "")
			if err != nil {
				t.Fatal(err)
			}
			if obj.ETag != etag || !bytes.Equal(obj.Body, tc.body) {
				t.Errorf("the %s state was overwritten:\n%s", tc.name, obj.Body)
			}
			for _, c := range e.sim.Calls()[calls:] {
				if c.Method != http.MethodGet {
					t.Errorf("%s state: the API was asked to change something: %s %s", tc.name, c.Method, c.Path)
				}
			}
		})
	}
	if _, err := e.bucket.Put(ctx, key, good, bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	e.mustRun("cluster", "update", "--name", "inputs", "--admin-cidr", "192.0.2.7/32")
	if st := e.consistent("inputs"); len(st.Nodes) != 2 || len(st.AdminCIDRs) != 1 {
		t.Errorf("after restoring the state: %d nodes, admin CIDRs %v", len(st.Nodes), st.AdminCIDRs)
	}
}

// signedEdit replaces old with new in a signed state object's document
// and signs the result with the cluster's state key: a document dynia's
// own key vouches for, which the decoder then judges.
func (e *testEnv) signedEdit(name string, obj []byte, old, new string) []byte {
	e.t.Helper()
	payload, _, err := signing.Unwrap(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	base, err := NewFactoryForTest(e).keyBase(name)
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := signing.LoadPrivateKey(base + ".sign.key")
	if err != nil {
		e.t.Fatal(err)
	}
	edited := bytes.Replace(payload, []byte(old), []byte(new), 1)
	if bytes.Equal(edited, payload) {
		e.t.Fatalf("%q not in the state", old)
	}
	b, err := signing.Seal(signing.KindState, key, edited)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}
