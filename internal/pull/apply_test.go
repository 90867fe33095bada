package pull

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/cluster"
)

// TestApplyResult: the per-file result of an apply says how far each file
// got and which daemon reloaded, and matches what ran (the reload commands
// record each reload): a first apply installs and reloads both; the same
// state again installs and reloads nothing; draining a peer changes
// haproxy.cfg only, so only HAProxy reloads.
func TestApplyResult(t *testing.T) {
	t.Parallel()
	d, _, set, log := newRecordingDaemon(t)
	ctx := context.Background()
	hp := func(changed, validated, installed, reloaded bool) FileResult {
		return FileResult{Component: "haproxy", Path: set.HAProxyConfig, Changed: changed, Validated: validated, Installed: installed, Reloaded: reloaded}
	}
	ka := func(changed, validated, installed, reloaded bool) FileResult {
		return FileResult{Component: "keepalived", Path: set.KeepalivedConfig, Changed: changed, Validated: validated, Installed: installed, Reloaded: reloaded}
	}
	drained := testState(3, 2)
	drained.Node("brisk-owl").Lifecycle = cluster.Draining
	steps := []struct {
		name    string
		st      *cluster.State
		want    ApplyResult
		result  Result
		reloads string // the reload log after the step
	}{
		{"first apply", testState(1, 2), ApplyResult{hp(true, true, true, true), ka(true, true, true, true)}, Changed, "haproxy\nkeepalived\n"},
		{"same config, new generation", testState(2, 2), ApplyResult{hp(false, false, false, false), ka(false, false, false, false)}, Unchanged, "haproxy\nkeepalived\n"},
		{"a peer drained: haproxy.cfg only", drained, ApplyResult{hp(true, true, true, true), ka(false, false, false, false)}, Changed, "haproxy\nkeepalived\nhaproxy\n"},
	}
	for _, s := range steps {
		got, err := d.apply(ctx, s.st)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: result (-want +got):\n%s", s.name, diff)
		}
		if got.Result() != s.result {
			t.Errorf("%s: Result() = %v, want %v", s.name, got.Result(), s.result)
		}
		if b, _ := os.ReadFile(log); string(b) != s.reloads {
			t.Errorf("%s: reloads run:\n%s\nwant:\n%s", s.name, b, s.reloads)
		}
		if g := d.rep.snapshot().AppliedGeneration; g != s.st.Generation {
			t.Errorf("%s: applied generation %d, want %d", s.name, g, s.st.Generation)
		}
	}
}

// TestApplyResultValidationFails: a render the tool rejects is changed but
// not validated, installed or reloaded, and the apply is an error.
func TestApplyResultValidationFails(t *testing.T) {
	t.Parallel()
	d, _, set := newTestDaemon(t, "false")
	got, err := d.apply(context.Background(), testState(1, 2))
	if err == nil {
		t.Fatal("apply with a rejecting validator succeeded")
	}
	want := ApplyResult{
		HAProxy:    FileResult{Component: "haproxy", Path: set.HAProxyConfig, Changed: true},
		Keepalived: FileResult{Component: "keepalived", Path: set.KeepalivedConfig, Changed: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(set.HAProxyConfig); !os.IsNotExist(err) {
		t.Errorf("haproxy.cfg installed after a failed validation: %v", err)
	}
}

// TestReloadClearsOnlyWhatItReloaded: a keepalived reload marked pending
// while an apply reloads HAProxy only (here: the supervisor, started by
// that reload, finds an adopted keepalived older than its config) is not
// cleared by that reload; it stays pending, and the next reload of
// keepalived runs it and clears it.
func TestReloadClearsOnlyWhatItReloaded(t *testing.T) {
	t.Parallel()
	d, _, set, log := newRecordingDaemon(t)
	ctx := context.Background()
	if _, err := d.apply(ctx, testState(1, 2)); err != nil {
		t.Fatal(err)
	}
	// Supervise mode only for the reload's start of the daemons, which
	// here marks keepalived as an adopted daemon predating its config.
	set.Supervise = true
	d.ap.settings = func() Settings { return set }
	d.ap.startDaemons = func(context.Context) { d.ap.markReload(false, true) }
	drained := testState(2, 2)
	drained.Node("brisk-owl").Lifecycle = cluster.Draining
	got, err := d.apply(ctx, drained)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HAProxy.Reloaded || got.Keepalived.Reloaded {
		t.Fatalf("result %+v; want HAProxy reloaded, keepalived not", got)
	}
	if hp, ka := d.ap.pending(); hp || !ka {
		t.Fatalf("pending after the HAProxy-only reload: haproxy %v keepalived %v; want keepalived only", hp, ka)
	}
	d.ap.startDaemons = func(context.Context) {}
	did, aerr := d.ap.reloadPendingKeepalived(ctx, d.log)
	if aerr != nil || !did {
		t.Fatalf("reloadPendingKeepalived = %v, %v; want a reload", did, aerr)
	}
	if hp, ka := d.ap.pending(); hp || ka {
		t.Errorf("pending after keepalived's reload: haproxy %v keepalived %v; want none", hp, ka)
	}
	if b, _ := os.ReadFile(log); string(b) != "haproxy\nkeepalived\nhaproxy\nkeepalived\n" {
		t.Errorf("reloads run:\n%s", b)
	}
	// Nothing pending: nothing reloaded.
	if did, aerr := d.ap.reloadPendingKeepalived(ctx, d.log); aerr != nil || did {
		t.Errorf("reloadPendingKeepalived with nothing pending = %v, %v", did, aerr)
	}
}
