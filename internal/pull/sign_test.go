package pull

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

func newSigningKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	k, err := signing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedState is the object the CLI writes for s, signed with key.
func signedState(t *testing.T, s *cluster.State, key ed25519.PrivateKey) []byte {
	t.Helper()
	s = s.Clone()
	s.SigningKey = signing.PublicKeyString(signing.Public(key))
	b, err := s.EncodeSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putRaw(m *memStore, key string, b []byte) {
	m.Put(context.Background(), key, b, bucket.Cond{})
}

func readFiles(t *testing.T, set Settings) string {
	t.Helper()
	hp, err := os.ReadFile(set.HAProxyConfig)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := os.ReadFile(set.KeepalivedConfig)
	if err != nil {
		t.Fatal(err)
	}
	return string(hp) + string(ka)
}

// TestSignedStateRefusals: a node with the state key in its pull.json
// applies only states signed with it. A changed body, an unsigned state, a
// state signed with another key and an older signed state (a replay, also
// after a restart, from the accepted-state file) are refused: the files on
// disk stay as they were, the report carries state_error, the same object
// is not fetched again (no thrash), and the next good state clears it.
func TestSignedStateRefusals(t *testing.T) {
	t.Parallel()
	_, m, set := newTestDaemon(t, "true")
	key := newSigningKey(t)
	set.StatePublicKey = signing.Public(key)
	set.AcceptedStateFile = filepath.Join(t.TempDir(), "lib", "state.json")
	d := New(set, m, Options{Version: "test"})
	ctx := context.Background()
	stateKey := cluster.StateKey("shop")

	gen1 := signedState(t, testState(1, 2), key)
	putRaw(m, stateKey, signedState(t, testState(2, 2), key))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("signed state: %v, %v", res, err)
	}
	if s := d.rep.snapshot(); s.StateSignature != report.StateVerified || s.StateError != "" {
		t.Fatalf("after a good state: signature %q, state_error %q", s.StateSignature, s.StateError)
	}
	if b, err := os.ReadFile(set.AcceptedStateFile); err != nil || !cluster.IsSigned(b) {
		t.Fatalf("accepted-state file: %v", err)
	}
	if fi, _ := os.Stat(set.AcceptedStateFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("accepted-state file mode %04o", fi.Mode().Perm())
	}
	served := readFiles(t, set)

	changed := testState(3, 2)
	changed.HA.AdvertInterval = 3
	changed.Nodes[1].PrivateIP = "10.9.0.99"
	good3 := signedState(t, testState(3, 2), key)
	forged := bytes.Replace(good3, []byte(`"advert_interval": 1`), []byte(`"advert_interval": 3`), 1)
	if bytes.Equal(forged, good3) {
		t.Fatal("test setup: advert_interval not found in the signed state")
	}
	unsigned, _ := changed.Encode()
	for _, tc := range []struct {
		name, reason string
		body         []byte
	}{
		{"signed body changed", "signature", forged},
		{"unsigned", "signature", unsigned},
		{"signed with another key", "signature", signedState(t, changed, newSigningKey(t))},
		{"an older signed state", "replay", gen1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			putRaw(m, stateKey, tc.body)
			_, err := d.Step(ctx, false)
			var ae *ApplyError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Fatalf("Step: %v, want reason %s", err, tc.reason)
			}
			if got := readFiles(t, set); got != served {
				t.Fatal("a refused state changed haproxy.cfg or keepalived.conf")
			}
			s := d.rep.snapshot()
			if !strings.HasPrefix(s.StateError, tc.reason+": ") || s.StateErrorAt == nil || s.LastError != s.StateError {
				t.Fatalf("report: state_error %q, last_error %q", s.StateError, s.LastError)
			}
			// The same object again: not modified, nothing re-done.
			if res, err := d.Step(ctx, false); err != nil || res != Unchanged {
				t.Fatalf("the refused object polled again: %v, %v", res, err)
			}
			if d.rep.snapshot().StateError != s.StateError {
				t.Fatal("state_error cleared by a poll that found nothing new")
			}
		})
	}
	putRaw(m, stateKey, good3)
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatalf("the good generation 3: %v", err)
	}
	if s := d.rep.snapshot(); s.StateError != "" || s.LastError != "" || s.AppliedGeneration != 3 {
		t.Fatalf("after a good state: %+v", s)
	}

	// A restarted dynia-pull remembers generation 3 from its file.
	d2 := New(set, m, Options{Version: "test"})
	putRaw(m, stateKey, signedState(t, testState(2, 2), key))
	var ae *ApplyError
	if _, err := d2.Step(ctx, false); !errors.As(err, &ae) || ae.Reason != "replay" {
		t.Fatalf("after a restart, generation 2: %v, want a replay refusal", err)
	}
}

// TestUncheckedNodeAppliesAnyState: a node made before state signing
// (no state_public_key) applies unsigned and signed states alike and says
// in its report that it checks nothing.
func TestUncheckedNodeAppliesAnyState(t *testing.T) {
	t.Parallel()
	d, m, _ := newTestDaemon(t, "true")
	ctx := context.Background()
	putState(t, m, testState(1, 2))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	putRaw(m, cluster.StateKey("shop"), signedState(t, testState(2, 3), newSigningKey(t)))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	if s := d.rep.snapshot(); s.AppliedGeneration != 2 || s.StateSignature != report.StateUnchecked {
		t.Fatalf("report: generation %d, state_signature %q", s.AppliedGeneration, s.StateSignature)
	}
}

// TestReportsAreSigned: with a report key, every report is an envelope
// that verifies with its public half; a key file readable by others is
// made 0600 first.
func TestReportsAreSigned(t *testing.T) {
	t.Parallel()
	_, m, set := newTestDaemon(t, "true")
	key := newSigningKey(t)
	set.ReportKeyFile = filepath.Join(t.TempDir(), "report.key")
	if err := os.WriteFile(set.ReportKeyFile, []byte(signing.PrivateKeyString(key)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := New(set, m, Options{Version: "test"})
	if fi, _ := os.Stat(set.ReportKeyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("report key mode %04o after start, want 0600", fi.Mode().Perm())
	}
	d.rep.write(context.Background())
	obj, err := m.Get(context.Background(), cluster.StatusKey("shop", "amber-fox"), "")
	if err != nil {
		t.Fatal(err)
	}
	st := testState(1, 2)
	st.Nodes[0].ReportKey = signing.PublicKeyString(signing.Public(key))
	r, err := report.OpenReport(obj.Body, st, "amber-fox")
	if err != nil || r.NodeID != "amber-fox" {
		t.Fatalf("OpenReport of the node's own report: %+v, %v", r, err)
	}
	if bytes.Contains(obj.Body, []byte(signing.PrivateKeyString(key))) {
		t.Fatal("the report holds the private key")
	}
}

// TestOpenReport: a report is believed only when signed with the report
// key the state records for its node, and about that node; a node without
// a key in the state (made before report signing) may write it unsigned.
func TestOpenReport(t *testing.T) {
	t.Parallel()
	fox, owl := newSigningKey(t), newSigningKey(t)
	st := testState(1, 3)
	st.Nodes[0].ReportKey = signing.PublicKeyString(signing.Public(fox)) // amber-fox
	st.Nodes[1].ReportKey = signing.PublicKeyString(signing.Public(owl)) // brisk-owl; calm-heron has none
	mkReport := func(id string, key ed25519.PrivateKey, edit func(*report.Status)) []byte {
		s := report.Status{NodeID: id, Cluster: "shop", VRRPState: report.VRRPBackup, AppHealthy: true, UpdatedAt: time.Now().UTC()}
		if edit != nil {
			edit(&s)
		}
		b, err := report.SignReport(s, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	owlOwn := mkReport("brisk-owl", owl, nil)
	for _, tc := range []struct {
		name, id string
		body     []byte
		want     string // "" believed, else part of the reason
	}{
		{"signed by its node", "amber-fox", mkReport("amber-fox", fox, nil), ""},
		{"unsigned, node has a key", "amber-fox", mkReport("amber-fox", nil, nil), "not signed"},
		{"signed with another node's key", "amber-fox", mkReport("amber-fox", owl, nil), "signature invalid"},
		{"another node's genuine report copied here", "amber-fox", owlOwn, "signature invalid"},
		{"a field changed after signing", "brisk-owl", bytes.Replace(owlOwn, []byte(`"app_healthy": true`), []byte(`"app_healthy": false`), 1), "signature invalid"},
		{"signed, but about another node", "brisk-owl", mkReport("amber-fox", owl, nil), "not the node whose report"},
		{"node without a key, unsigned", "calm-heron", mkReport("calm-heron", nil, nil), ""},
		{"node without a key, about another", "calm-heron", mkReport("amber-fox", nil, nil), "not the node whose report"},
		{"not a node of the state", "dusty-yak", mkReport("dusty-yak", nil, nil), "not a node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := report.OpenReport(tc.body, st, tc.id)
			if tc.want == "" {
				if err != nil || r == nil {
					t.Fatalf("not believed: %v", err)
				}
				return
			}
			var re *report.ReportError
			if !errors.As(err, &re) || !strings.Contains(re.Reason, tc.want) || r != nil {
				t.Fatalf("OpenReport: %v, %v; want a ReportError with %q", r, err, tc.want)
			}
		})
	}
}

// TestLearnKeysOnlyFromSignedReports: a report not signed with its node's
// key never supplies a mesh key: not a first one, not a replacement.
func TestLearnKeysOnlyFromSignedReports(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	set := Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(),
		Mesh: &MeshSettings{Interface: "unused0", Port: 51820, KeyFile: filepath.Join(t.TempDir(), "k")}}
	d := New(set, store, Options{})
	owl, mallory := newSigningKey(t), newSigningKey(t)
	st := testState(1, 2) // amber-fox (self), brisk-owl
	st.Nodes[1].ReportKey = signing.PublicKeyString(signing.Public(owl))
	ctx := context.Background()
	put := func(key ed25519.PrivateKey, wg string) {
		b, err := report.SignReport(report.Status{NodeID: "brisk-owl", Cluster: "shop", VRRPState: report.VRRPBackup, UpdatedAt: time.Now().UTC(),
			Mesh: &report.MeshStatus{PublicKey: wg, Port: 51820}}, key)
		if err != nil {
			t.Fatal(err)
		}
		putRaw(store, cluster.StatusKey("shop", "brisk-owl"), b)
	}
	forgedKey, realKey := genKey(t).PublicKey(), genKey(t).PublicKey()
	put(mallory, forgedKey.String())
	d.learnKeys(ctx, st)
	if k := d.mesh.knownKeys()["brisk-owl"]; k.known {
		t.Fatalf("mesh key taken from a forged report: %+v", k)
	}
	put(owl, realKey.String())
	d.learnKeys(ctx, st)
	if k := d.mesh.knownKeys()["brisk-owl"]; !k.known || k.key != realKey {
		t.Fatalf("mesh key from the signed report: %+v", k)
	}
	// A forged replacement is not taken either: the known key stays.
	put(nil, forgedKey.String())
	d.mesh.mu.Lock()
	d.mesh.keys["brisk-owl"].checked = d.mesh.keys["brisk-owl"].checked.Add(-2 * keyRecheck)
	d.mesh.mu.Unlock()
	d.learnKeys(ctx, st)
	if k := d.mesh.knownKeys()["brisk-owl"]; k.key != realKey {
		t.Fatalf("a forged (unsigned) report replaced the key: %+v", k)
	}
}

// TestRolloutBelievesOnlySignedReports: the rollout reads its peers'
// reports through report.ReadReport. A report of amber-fox forged with another
// key (claiming the new release failed there) does not halt brisk-owl's
// rollout: amber-fox counts as unheard-of, as a dead node does. Its
// genuine report saying the same does.
func TestRolloutBelievesOnlySignedReports(t *testing.T) {
	t.Parallel()
	w := newAppWorld(t)
	store := newMemStore()
	w.d.app.readPeers = readPeerReport(func() bucket.Store { return store })
	fox, mallory := newSigningKey(t), newSigningKey(t)
	w.st.Nodes[0].ReportKey = signing.PublicKeyString(signing.Public(fox)) // amber-fox
	failedOnFox := func(key ed25519.PrivateKey, release, failed int64) {
		t.Helper()
		since := time.Now().Add(-time.Hour).UTC()
		b, err := report.SignReport(report.Status{NodeID: "amber-fox", Cluster: "shop", VRRPState: report.VRRPBackup, UpdatedAt: time.Now().UTC(),
			App: &report.AppStatus{State: report.AppRunning, Release: release, Healthy: true, Since: &since, FailedRelease: failed, Error: "exited with status 3"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		putRaw(store, cluster.StatusKey("shop", "amber-fox"), b)
	}
	r1 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	w.step()
	if w.running() != r1 {
		t.Fatalf("first release: runs %d, want %d", w.running(), r1)
	}
	r2 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	failedOnFox(mallory, r1, r2)
	w.step()
	if w.running() != r2 || strings.Contains(w.report().Waiting, "halted") {
		t.Fatalf("a forged failure report halted the rollout: runs %d, report %+v", w.running(), w.report())
	}
	r3 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	failedOnFox(fox, r2, r3)
	w.step()
	if w.running() != r2 || !strings.Contains(w.report().Waiting, "halted: release") {
		t.Fatalf("the genuine failure report: runs %d, report %+v; want halted on release %d", w.running(), w.report(), r3)
	}
}

// TestMinStateGeneration: pull.json's min_state_generation (the state the
// droplet was made from) is the replay floor before any state was
// applied: an older signed state is refused even as the node's first.
func TestMinStateGeneration(t *testing.T) {
	t.Parallel()
	_, m, set := newTestDaemon(t, "true")
	key := newSigningKey(t)
	set.StatePublicKey = signing.Public(key)
	set.MinStateGeneration = 5
	d := New(set, m, Options{Version: "test"})
	ctx := context.Background()
	putRaw(m, cluster.StateKey("shop"), signedState(t, testState(4, 2), key))
	var ae *ApplyError
	if _, err := d.Step(ctx, false); !errors.As(err, &ae) || ae.Reason != "replay" {
		t.Fatalf("generation 4 below min_state_generation 5: %v, want a replay refusal", err)
	}
	if _, err := os.Stat(set.HAProxyConfig); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("haproxy.cfg after the refused first state: %v", err)
	}
	putRaw(m, cluster.StateKey("shop"), signedState(t, testState(5, 2), key))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("generation 5: %v, %v", res, err)
	}
}
