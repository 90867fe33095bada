package report

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dynia/dynia/internal/cluster"
)

// fuzzNow is the reader's clock in FuzzDecodeStatus.
var fuzzNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// FuzzDecodeStatus: the report decoder never panics, refuses in one line,
// and hands the CLI only reports whose every field it acts on is valid:
// the right node and cluster, a known VRRP state, valid backends, times
// not from the future, and free text without control characters within
// MaxReportText. Seeds: testdata/fuzz/FuzzDecodeStatus and a report as
// dynia-pull writes it.
func FuzzDecodeStatus(f *testing.F) {
	at := fuzzNow.Add(-time.Minute)
	good := Status{NodeID: "amber-fox", Cluster: "shop", AppliedGeneration: 7, HAProxyConfigHash: "6c0636a1134b9b11",
		VRRPState: VRRPMaster, Backends: []BackendStatus{{ID: "amber-fox", Status: "UP"}, {ID: "brisk-owl", Status: "DRAIN"}},
		AppHealthy: true, Version: "v1.2.3", LastError: "render: boom", LastErrorAt: &at, UpdatedAt: fuzzNow}
	b, err := json.MarshalIndent(good, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStatusOf(b, "shop", "amber-fox", fuzzNow)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(b) > MaxStatusBytes || !json.Valid(b) {
			t.Fatalf("accepted %d bytes (valid JSON: %v)", len(b), json.Valid(b))
		}
		if s.NodeID != "amber-fox" || s.Cluster != "shop" || s.AppliedGeneration < 0 {
			t.Fatalf("accepted node %q cluster %q generation %d", s.NodeID, s.Cluster, s.AppliedGeneration)
		}
		if !slices.Contains([]string{VRRPMaster, VRRPBackup, VRRPFault, VRRPUnknown}, s.VRRPState) {
			t.Fatalf("accepted vrrp_state %q", s.VRRPState)
		}
		for _, be := range s.Backends {
			if cluster.ValidateNodeID(be.ID) != nil || !slices.Contains([]string{"UP", "DOWN", "DRAIN", "MAINT"}, be.Status) {
				t.Fatalf("accepted backend %+v", be)
			}
		}
		for _, tm := range s.times() {
			if tm.t != nil && (tm.t.After(fuzzNow.Add(MaxClockSkew)) || tm.t.Before(earliestReport)) {
				t.Fatalf("accepted %s %v", tm.field, tm.t)
			}
		}
		texts := []string{s.LastError, s.Version, s.ReservedIP.LastMoveReason, s.ReservedIP.Note, s.Failover.Error}
		if s.App != nil {
			texts = append(append(texts, s.App.Error, s.App.Waiting), s.App.Logs...)
		}
		for _, text := range texts {
			if len(text) > MaxReportText || !utf8.ValidString(text) || strings.ContainsFunc(text, unsafeRune) {
				t.Fatalf("free text not cleaned: %q", text)
			}
		}
		// What the CLI accepted, dynia-pull could have written: it encodes
		// and reads back the same.
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeStatusOf(out, "shop", "amber-fox", fuzzNow); err != nil {
			t.Fatalf("re-encoded report refused: %v\n%s", err, out)
		}
	})
}
