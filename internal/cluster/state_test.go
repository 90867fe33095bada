package cluster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/signing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// sample builds a three-node cluster the way the CLI would.
func sample(t *testing.T) *State {
	t.Helper()
	s := New("myapp", "sgp1", "s-1vcpu-1gb", "123456", t0)
	s.VPC = VPC{ID: "5a4981aa-9653-4bd1-bef5-d6bff52042e4", CIDR: "10.10.0.0/24", Created: true}
	s.ReservedIP = "198.51.100.10"
	s.FirewallID = "bb4b2611-3d72-467b-8602-280330ecd65c"
	s.DNS = &DNS{Provider: DNSDigitalOcean, Domain: "example.com", Name: "app", RecordID: "7", Created: true}
	s.AdminCIDRs = []string{"192.0.2.7/32"}
	s, _, err := AddNodes(s, 3, NewNamer(1), t0)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err = AddRelease(s, Release{Image: "ghcr.io/acme/app@sha256:" + strings.Repeat("ab", 32), Tag: "ghcr.io/acme/app:1.2.3",
		Port: 8080, Env: map[string]string{"LOG_LEVEL": "info"}}, []string{s.Nodes[2].ID, s.Nodes[1].ID, s.Nodes[0].ID}, DefaultSoakSeconds, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range s.Nodes {
		s, err = SetNodeNetwork(s, n.ID, 1000+i, "198.51.100."+itoa(20+i), "10.10.0."+itoa(11+i))
		if err != nil {
			t.Fatal(err)
		}
	}
	// Keys from fixed seeds, so the golden file stays put.
	s.SigningKey = testPublicKey(0)
	for i := range s.Nodes {
		s.Nodes[i].ReportKey = testPublicKey(byte(i + 1))
	}
	s.Generation = 5
	return s
}

// testPublicKey is the public half of the Ed25519 key whose seed is 32
// bytes of b.
func testPublicKey(b byte) string {
	return signing.PublicKeyString(signing.Public(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))))
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestStateGolden(t *testing.T) {
	t.Parallel()
	s := sample(t)
	got, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "state.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("state JSON differs from %s (-want +got):\n%s", path, diff)
	}
	back, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good, err := sample(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	doc := string(good)
	tests := []struct {
		name, from, to, wantErr string
	}{
		{"unknown schema", `"schema_version": 1`, `"schema_version": 2`, `schema_version "2": unsupported by this dynia, which reads 1: state written by a newer dynia; upgrade the dynia CLI`},
		{"schema zero", `"schema_version": 1`, `"schema_version": 0`, `schema_version "0": unsupported`},
		{"missing schema", `"schema_version": 1,`, ``, `schema_version "": missing`},
		{"unknown field", `"generation": 5`, `"generation": 5, "surprise": true`, `field "surprise" is unknown to this one`},
		{"bad ip", `"private_ip": "10.10.0.12"`, `"private_ip": "10.10.0.x"`, `nodes[1].private_ip "10.10.0.x"`},
		{"dup private ip", `"private_ip": "10.10.0.12"`, `"private_ip": "10.10.0.11"`, `nodes[1].private_ip "10.10.0.11": same as node`},
		{"dup priority", `"priority": 140`, `"priority": 150`, `nodes[1].priority "150": same as node`},
		{"two active", `"role": "standby"`, `"role": "active"`, `two active nodes`},
		{"bad role", `"role": "standby"`, `"role": "leader"`, `role "leader"`},
		{"bad lifecycle", `"lifecycle": "ready"`, `"lifecycle": "gone"`, `lifecycle "gone"`},
		{"bad reserved ip", `"reserved_ip": "198.51.100.10"`, `"reserved_ip": "::1"`, `reserved_ip "::1"`},
		{"truncated", `"nodes"`, `"nodes`, `not valid JSON`},
		{"bad name", `"name": "myapp"`, `"name": "My_App"`, `name "My_App"`},
		{"priority range", `"priority": 130`, `"priority": 255`, `nodes[2].priority "255"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(doc, tc.from) {
				t.Fatalf("test setup: %q not in document", tc.from)
			}
			bad := strings.Replace(doc, tc.from, tc.to, 1)
			_, err := Decode([]byte(bad))
			if err == nil {
				t.Fatal("Decode accepted a bad state")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeNodeWithoutPrivateIP(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.Nodes[0].PrivateIP = ""
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "nodes[0].private_ip") {
		t.Fatalf("want an error naming nodes[0].private_ip, got %v", err)
	}
}

// TestRecentOps: the operation ids a write leaves in the document are
// bounded to the newest MaxRecentOps and checked by the strict decoder.
func TestRecentOps(t *testing.T) {
	t.Parallel()
	s := sample(t)
	var ops []string
	for range MaxRecentOps + 3 {
		op := NewOpID()
		ops = append(ops, op)
		s.withOp(op)
	}
	if diff := cmp.Diff(ops[3:], s.RecentOps); diff != "" {
		t.Fatalf("recent_ops keeps the newest %d (-want +got):\n%s", MaxRecentOps, diff)
	}
	if s.HasOp(ops[2]) || !s.HasOp(ops[3]) || s.HasOp("") {
		t.Fatal("HasOp does not follow recent_ops")
	}
	c := s.Clone()
	c.RecentOps[0] = "x"
	if s.RecentOps[0] != ops[3] {
		t.Fatal("Clone shares recent_ops with the original")
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.RecentOps, back.RecentOps); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		ops     []string
		wantErr string
	}{
		{"not hex", []string{strings.Repeat("g", 32)}, `recent_ops[0] "` + strings.Repeat("g", 32) + `": must be 32 lowercase hex digits`},
		{"upper case", []string{strings.Repeat("A", 32)}, `recent_ops[0]`},
		{"short", []string{"abcd"}, `recent_ops[0] "abcd"`},
		{"duplicate", []string{ops[5], ops[6], ops[5]}, `recent_ops[2] "` + ops[5] + `": duplicate of recent_ops[0]`},
		{"too many", append(slices.Clone(ops[:MaxRecentOps]), NewOpID()), `recent_ops "33": more than 32 operation ids`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := s.Clone()
			bad.RecentOps = tc.ops
			raw, err := json.Marshal(bad)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(raw)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Decode = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
