package pull

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

// signedWith is the object a newer CLI writes for s: its JSON with the
// replacements applied (fields this build does not know), signed with key.
func signedWith(t *testing.T, s *cluster.State, key ed25519.PrivateKey, replace ...string) []byte {
	t.Helper()
	s = s.Clone()
	s.SigningKey = signing.PublicKeyString(signing.Public(key))
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.NewReplacer(replace...).Replace(string(b))
	if doc == string(b) && len(replace) > 0 {
		t.Fatal("test setup: nothing replaced")
	}
	env, err := signing.Seal(signing.KindState, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestOlderNodeAndNewerStates is the compatibility rule seen from an
// older dynia-pull (v1.2.0): a state with optional fields it does not
// know (top level and nested, signed over the bytes as stored) is applied;
// one whose min_pull_version is above it is refused — the files it serves
// stay as they were, the report says upgrade_required (and state_error),
// carries its version and image, and polling the same object again does
// nothing; once min_pull_version is at or below it, it applies again and
// the report clears.
func TestOlderNodeAndNewerStates(t *testing.T) {
	t.Parallel()
	_, m, set := newTestDaemon(t, "true")
	key := newSigningKey(t)
	set.StatePublicKey = signing.Public(key)
	set.Image = "182746331"
	d := New(set, m, Options{Version: "v1.2.0"})
	ctx := context.Background()
	stateKey := cluster.StateKey("shop")

	putRaw(m, stateKey, signedState(t, testState(2, 2), key))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatalf("generation 2: %v", err)
	}

	// A newer CLI's optional fields: ignored, the rest applied.
	gen3 := testState(3, 2)
	gen3.HA.AdvertInterval = 3
	putRaw(m, stateKey, signedWith(t, gen3, key,
		`"generation": 3,`, `"generation": 3, "placement": {"spread": "hosts"},`,
		`"preempt": false`, `"preempt": false, "unicast": true`,
		`"lifecycle": "ready",`, `"lifecycle": "ready", "zone": "sgp1-a",`))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("generation 3 with unknown fields: %v, %v", res, err)
	}
	served := readFiles(t, set)
	if !strings.Contains(served, "advert_int 3") {
		t.Fatalf("generation 3 not rendered:\n%s", served)
	}
	if s := d.rep.snapshot(); s.AppliedGeneration != 3 || s.StateError != "" || s.LastError != "" || s.UpgradeRequired != "" {
		t.Fatalf("after generation 3: %+v", s)
	}

	// min_pull_version above v1.2.0: refused, last good config kept.
	gen4 := testState(4, 2)
	gen4.HA.AdvertInterval = 5
	gen4.MinPullVersion = "v1.3.0"
	putRaw(m, stateKey, signedWith(t, gen4, key, `"preempt": false`, `"preempt": false, "unicast": true`))
	_, err := d.Step(ctx, false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "upgrade_required" || !errors.Is(err, cluster.ErrUpgradeRequired) {
		t.Fatalf("generation 4 needing v1.3.0: %v, want reason upgrade_required", err)
	}
	if readFiles(t, set) != served {
		t.Fatal("a state needing a newer dynia-pull changed haproxy.cfg or keepalived.conf")
	}
	s := d.rep.snapshot()
	const want = "upgrade_required: upgrade required: the state needs dynia-pull v1.3.0 or newer, this is v1.2.0; serving the last good config"
	if s.UpgradeRequired != "v1.3.0" || s.StateError != want || s.LastError != want || s.AppliedGeneration != 3 {
		t.Fatalf("report after generation 4: upgrade_required %q, state_error %q, last_error %q, applied %d",
			s.UpgradeRequired, s.StateError, s.LastError, s.AppliedGeneration)
	}
	if res, err := d.Step(ctx, false); err != nil || res != Unchanged {
		t.Fatalf("the refused object polled again: %v, %v", res, err)
	}
	// What the CLI reads: the signed report, with the version and image.
	rep := d.rep.snapshot()
	rep.UpdatedAt = time.Now().UTC() // as statusReporter.write stamps it
	b, err := report.SignReport(rep, d.rep.key)
	if err != nil {
		t.Fatal(err)
	}
	st := testState(4, 2)
	r, err := report.OpenReport(b, st, set.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "v1.2.0" || r.Image != "182746331" || r.UpgradeRequired != "v1.3.0" || r.StateError != want {
		t.Fatalf("report as read: version %q, image %q, upgrade_required %q, state_error %q", r.Version, r.Image, r.UpgradeRequired, r.StateError)
	}

	// Lowered to the node's release: applied, the report clears.
	gen5 := testState(5, 2)
	gen5.HA.AdvertInterval = 5
	gen5.MinPullVersion = "v1.2.0"
	putRaw(m, stateKey, signedState(t, gen5, key))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("generation 5 needing v1.2.0: %v, %v", res, err)
	}
	if s := d.rep.snapshot(); s.AppliedGeneration != 5 || s.UpgradeRequired != "" || s.StateError != "" || s.LastError != "" {
		t.Fatalf("after generation 5: %+v", s)
	}
	if !strings.Contains(readFiles(t, set), "advert_int 5") {
		t.Fatal("generation 5 not rendered")
	}
}
