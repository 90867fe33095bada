package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/cluster"
)

// goodReport is a report as dynia-pull writes it for amber-fox of shop.
func goodReport(t *testing.T) string {
	t.Helper()
	at := fuzzNow.Add(-time.Minute)
	s := Status{NodeID: "amber-fox", Cluster: "shop", AppliedGeneration: 7, HAProxyConfigHash: "6c0636a1134b9b11",
		VRRPState: VRRPMaster, Backends: []BackendStatus{{ID: "amber-fox", Status: "UP"}, {ID: "brisk-owl", Status: "DRAIN"}},
		AppHealthy: true, Version: "v1.2.3", LastError: "render: boom", LastErrorAt: &at,
		Failover: FailoverStatus{Ready: true, CheckedAt: &at}, UpdatedAt: fuzzNow,
		App: &AppStatus{Release: 2, Image: "ghcr.io/acme/app@sha256:" + strings.Repeat("ab", 32), State: AppRunning, Healthy: true,
			FailedRelease: 3, Error: "release 3: no 200", Logs: []string{"starting", "panic: boom"}}}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDecodeStatusOfRefuses: a report cannot steer the CLI: it speaks only
// for its own node and cluster, with known enumerations, times not ahead of
// the reader's clock, one unambiguous document within MaxStatusBytes.
func TestDecodeStatusOfRefuses(t *testing.T) {
	t.Parallel()
	doc := goodReport(t)
	for _, tc := range []struct{ name, from, to, want string }{
		{"another node's report", `"node_id": "amber-fox"`, `"node_id": "brisk-owl"`, `node_id "brisk-owl": not the node whose report this is (amber-fox)`},
		{"another cluster", `"cluster": "shop"`, `"cluster": "prod"`, `cluster "prod": not the cluster whose report this is (shop)`},
		{"not a node id", `"node_id": "amber-fox"`, `"node_id": "../x"`, `node_id "../x": must be a two-word node id`},
		{"negative generation", `"applied_generation": 7`, `"applied_generation": -1`, `applied_generation "-1": must not be negative`},
		{"unknown vrrp state", `"vrrp_state": "MASTER"`, `"vrrp_state": "master"`, `vrrp_state "master": must be MASTER, BACKUP, FAULT or UNKNOWN`},
		{"unknown backend status", `"status": "DRAIN"`, `"status": "GONE"`, `backends[1].status "GONE"`},
		{"backend not a node id", `"id": "brisk-owl"`, `"id": "brisk owl"`, `backends[1].id "brisk owl"`},
		{"backend twice", `"id": "brisk-owl"`, `"id": "amber-fox"`, `backends[1].id "amber-fox": listed twice`},
		{"hash not hex", `"haproxy_config_hash": "6c0636a1134b9b11"`, `"haproxy_config_hash": "6c06 36"`, `haproxy_config_hash "6c06 36"`},
		{"from the future", `"updated_at": "2026-11-27T12:00:00Z"`, `"updated_at": "2026-11-27T12:10:01Z"`, `updated_at "2026-11-27T12:10:01Z": more than 10m0s ahead`},
		{"error time from the future", `"last_error_at": "2026-11-27T11:59:00Z"`, `"last_error_at": "2099-01-01T00:00:00Z"`, `last_error_at "2099-01-01T00:00:00Z": more than 10m0s ahead`},
		{"no update time", `"updated_at": "2026-11-27T12:00:00Z"`, `"updated_at": "0001-01-01T00:00:00Z"`, `updated_at "": missing`},
		{"ancient", `"updated_at": "2026-11-27T12:00:00Z"`, `"updated_at": "1999-01-01T00:00:00Z"`, `updated_at "1999-01-01T00:00:00Z": before 2020`},
		{"duplicate key", `"applied_generation": 7`, `"applied_generation": 7, "applied_generation": 99`, `duplicate key "applied_generation"`},
		{"case-variant key", `"applied_generation": 7`, `"Applied_Generation": 99`, `key "Applied_Generation" must be spelled "applied_generation"`},
		{"case-variant key in a backend", `"id": "brisk-owl"`, `"ID": "brisk-owl"`, `backends[1]: key "ID" must be spelled "id"`},
		{"trailing data", "\n}", "\n}}", "trailing data"},
		{"unknown app state", `"state": "running"`, `"state": "pwned"`, `app.state "pwned": must be none, starting, running or waiting`},
		{"app image by tag", `"image": "ghcr.io/acme/app@sha256:`, `"image": "ghcr.io/acme/app:1", "x": "`, `app.image "ghcr.io/acme/app:1"`},
		{"negative release", `"release": 2`, `"release": -2`, `release numbers must not be negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(doc, tc.from) {
				t.Fatalf("test setup: %q not in %s", tc.from, doc)
			}
			bad := strings.Replace(doc, tc.from, tc.to, 1)
			_, err := DecodeStatusOf([]byte(bad), "shop", "amber-fox", fuzzNow)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeStatusOf = %v, want an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "node status: ") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q: want one line starting with node status:", err)
			}
		})
	}
	big := doc + strings.Repeat(" ", MaxStatusBytes-len(doc)+1)
	if _, err := DecodeStatusOf([]byte(big), "shop", "amber-fox", fuzzNow); err == nil || !strings.Contains(err.Error(), "over the limit of 262144") {
		t.Fatalf("DecodeStatusOf of %d bytes = %v", len(big), err)
	}
}

// TestDecodeStatusTolerates: fields added later are ignored, a clock a few
// minutes ahead is fine, and free text comes back safe to print.
func TestDecodeStatusTolerates(t *testing.T) {
	t.Parallel()
	doc := goodReport(t)
	doc = strings.Replace(doc, `"app_healthy": true`, `"app_healthy": true, "mesh": {"interface": "dynia0", "peers": [{"node_id": "brisk-owl"}]}`, 1)
	doc = strings.Replace(doc, `"updated_at": "2026-11-27T12:00:00Z"`, `"updated_at": "2026-11-27T12:09:00Z"`, 1)
	doc = strings.Replace(doc, `"last_error": "render: boom"`, `"last_error": "\u001b[2J\u001b]0;pwned\u0007boom\r\nnext \u202eevil `+strings.Repeat("é", 2000)+`"`, 1)
	doc = strings.Replace(doc, `"panic: boom"`, `"panic: \u001b[31mboom\u001b[0m"`, 1)
	s, err := DecodeStatusOf([]byte(doc), "shop", "amber-fox", fuzzNow)
	if err != nil {
		t.Fatal(err)
	}
	if s.App == nil || s.App.Logs[1] != "panic: \uFFFD[31mboom\uFFFD[0m" {
		t.Fatalf("app log line not cleaned: %+v", s.App)
	}
	if !strings.HasPrefix(s.LastError, "\uFFFD[2J\uFFFD]0;pwned\uFFFDboom\uFFFD\uFFFDnext \uFFFDevil éé") || !strings.HasSuffix(s.LastError, "é…") || len(s.LastError) > MaxReportText {
		t.Fatalf("last_error not cleaned: %q (%d bytes)", s.LastError[:60], len(s.LastError))
	}
	want := Status{NodeID: "amber-fox", Cluster: "shop", AppliedGeneration: 7, VRRPState: VRRPMaster}
	if diff := cmp.Diff(want, Status{NodeID: s.NodeID, Cluster: s.Cluster, AppliedGeneration: s.AppliedGeneration, VRRPState: s.VRRPState}); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}
}

// TestLargestReportFits: a node of a 254-node cluster (the most unique
// priorities allow), with the mesh, a failed release's logs and every text
// field at its bound, writes a report well within MaxStatusBytes.
func TestLargestReportFits(t *testing.T) {
	t.Parallel()
	namer, taken := cluster.NewNamer(1), map[string]bool{}
	s := Status{NodeID: "amber-fox", Cluster: "a" + strings.Repeat("b", 28) + "c", AppliedGeneration: 1 << 40,
		HAProxyConfigHash: strings.Repeat("f", 16), KeepalivedConfigHash: strings.Repeat("f", 16), VRRPState: VRRPBackup,
		Version: "v10.20.30-123-gabcdef0-dirty", LastError: strings.Repeat("e", MaxReportText), UpdatedAt: fuzzNow}
	s.Mesh = &MeshStatus{Interface: "dynia0", PublicKey: strings.Repeat("A", 43) + "=", Address: "10.99.255.254", Port: 51820}
	age := int64(1 << 40)
	for range cluster.MaxPriority {
		id, err := namer.Next(taken)
		if err != nil {
			t.Fatal(err)
		}
		taken[id] = true
		s.Backends = append(s.Backends, BackendStatus{ID: id, Status: "MAINT"})
		s.Mesh.Peers = append(s.Mesh.Peers, MeshPeerStatus{NodeID: id, PublicKey: strings.Repeat("B", 43) + "=",
			Endpoint: "10.255.255.255:65535", LatestHandshakeAgeSeconds: &age})
	}
	long := make([]string, 100)
	for i := range long {
		long[i] = strings.Repeat("l", 10_000)
	}
	s.App = &AppStatus{Release: 1 << 40, Image: "registry.example.com/acme/app@sha256:" + strings.Repeat("ab", 32), State: AppRunning,
		Target: 1 << 40, FailedRelease: 1 << 40, Waiting: strings.Repeat("w", MaxReportText), Error: strings.Repeat("e", MaxReportText),
		Logs: TrimLogs(long)}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxStatusBytes/2 {
		t.Fatalf("the largest report is %d bytes, more than half of MaxStatusBytes", len(b))
	}
	if _, err := DecodeStatusOf(b, s.Cluster, "amber-fox", fuzzNow); err != nil {
		t.Fatal(err)
	}
	t.Logf("largest report: %d bytes", len(b))
}
