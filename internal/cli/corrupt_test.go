package cli

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
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
		{"node", "remove", "--name", "inputs", "--node", standby, "--confirm"},
		{"node", "make-active", "--name", "inputs", "--node", standby},
		{"node", "repair-ha", "--name", "inputs", "--force"},
		{"node", "create-ha", "--name", "inputs", "--region", "sgp1", "--size", "s-1vcpu-1gb"},
		{"cluster", "update", "--name", "inputs", "--admin-cidr", "192.0.2.7/32"},
		{"cluster", "get", "--name", "inputs"},
		{"cluster", "destroy", "--name", "inputs", "--confirm"},
		{"app", "deploy", "--name", "inputs", "--image", "registry.example/app@sha256:" + strings.Repeat("a", 64)},
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"truncated", good[:len(good)/2], "not valid JSON"},
		{"empty", []byte{}, "not valid JSON"},
		{"hand-broken", bytes.Replace(good, []byte(`"region": "sgp1"`), []byte(`"region": 7`), 1), "region"},
		{"unknown schema_version", bytes.Replace(good, []byte(`"schema_version": 1`), []byte(`"schema_version": 99`), 1), `schema_version "99": unsupported`},
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
