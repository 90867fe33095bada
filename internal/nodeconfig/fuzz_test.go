package nodeconfig

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/jsonstrict"
)

// FuzzNodeConfig: pull.json's decoder never panics and refuses in one line;
// what it accepts is one unambiguous document within MaxBytes whose
// cluster, node id and run dir are safe to render, and which survives a
// round trip. Seeds: testdata/fuzz/FuzzNodeConfig.
func FuzzNodeConfig(f *testing.F) {
	f.Add([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b/p","poll_interval":"2s","supervise":true,"run_dir":"/run/dynia"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(b) > MaxBytes || jsonstrict.Check[Config](b, MaxBytes) != nil {
			t.Fatalf("accepted a document jsonstrict refuses")
		}
		if cluster.ValidateName(c.Cluster) != nil || cluster.ValidateNodeID(c.NodeID) != nil {
			t.Fatalf("accepted cluster %q node %q", c.Cluster, c.NodeID)
		}
		if c.RunDir != "" && (ValidateRunDir(c.RunDir) != nil || strings.ContainsAny(c.RunDir, " \t\r\n#'\"\\$")) {
			t.Fatalf("accepted run_dir %q", c.RunDir)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded config refused: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
