package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/failover"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// TestBadNodeTokenIsVisibleAndHeals is the reproduction of a standby with
// an invalid node token: it used to report nothing wrong until a failover
// onto it failed with 401, and a fixed token file changed nothing until a
// restart. Now the token is checked at start (status failover.ready false,
// the API's reason in failover.error) and a replaced file is picked up and
// checked at once, without a restart.
func TestBadNodeTokenIsVisibleAndHeals(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Skip("true not found")
	}
	sim := dosim.New(dosim.Options{})
	sim.AddToken("node-good", dosim.NodeScopes()...)
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	t.Cleanup(sim.Close)

	dir := t.TempDir()
	store, stateDir := fileStoreWithState(t, dir)
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(secrets, "do-token")
	writeToken := func(tok string) {
		t.Helper()
		tmp := tokenFile + ".new"
		if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tokenFile); err != nil { // as cloud-init or an editor would
			t.Fatal(err)
		}
	}
	writeToken("node-bad")
	cfgPath := filepath.Join(dir, "pull.json")
	cfg := `{"cluster": "shop", "node_id": "amber-fox", "state_url": "file://` + stateDir + `",
		"poll_interval": "200ms", "haproxy_config": "` + filepath.Join(dir, "haproxy.cfg") + `",
		"keepalived_config": "` + filepath.Join(dir, "keepalived.conf") + `", "run_dir": "` + filepath.Join(dir, "run") + `",
		"haproxy_bin": "` + tool + `", "keepalived_bin": "` + tool + `", "metrics_addr": "127.0.0.1:0",
		"do_token_file": "` + tokenFile + `", "do_api_url": "` + api.URL + `"}`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{ConfigPath: cfgPath, Logger: slog.New(slog.DiscardHandler), Version: "test"})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitReport(t, store, "shop", "amber-fox", "bad token reported", func(s *report.Status) bool {
		return !s.Failover.Ready && strings.Contains(s.Failover.Error, "401")
	})
	writeToken("node-good")
	waitReport(t, store, "shop", "amber-fox", "good token picked up", func(s *report.Status) bool {
		return s.Failover.Ready && s.Failover.Error == ""
	})
	if strings.Contains(reportText(t, store), "node-good") || strings.Contains(reportText(t, store), "node-bad") {
		t.Error("the status report contains the token")
	}
}

func reportText(t *testing.T, store bucket.Store) string {
	t.Helper()
	obj, err := store.Get(context.Background(), cluster.StatusKey("shop", "amber-fox"), "")
	if err != nil {
		t.Fatal(err)
	}
	return string(obj.Body)
}

// TestUnreachableAPIMarksFailoverNotReady: a MASTER whose claim got no
// answer from the DO API (a partition, an outage) reports failover not
// ready with the reason, so `node list` says what the node cannot reach;
// an answer, even a refusal, is not "unreachable"; the next claim that
// gets an answer makes it ready again.
func TestUnreachableAPIMarksFailoverNotReady(t *testing.T) {
	t.Parallel()
	d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(), PollInterval: time.Second}, newMemStore(), Options{})
	d.onVRRP(report.VRRPMaster)
	ready := time.Now().UTC()
	d.rep.update(func(s *report.Status) { s.Failover = report.FailoverStatus{Ready: true, CheckedAt: &ready} })

	timeout := fmt.Errorf("read reserved IP 198.51.100.7: cloud: get reserved IP: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded})
	d.claim.record("vrrp BACKUP -> MASTER", failover.Result{APICalls: 1}, timeout)
	f := d.rep.snapshot().Failover
	if f.Ready || !strings.Contains(f.Error, "cannot reach the DO API") || !strings.Contains(f.Error, "dial tcp") {
		t.Errorf("after a claim that got no answer: failover %+v; want not ready, naming the DO API and the network error", f)
	}

	refused := &cloud.APIError{Op: "assign reserved IP", StatusCode: 500, Message: "internal"}
	d.claim.record("check", failover.Result{APICalls: 2}, refused)
	if f := d.rep.snapshot().Failover; !strings.Contains(f.Error, "cannot reach") {
		t.Errorf("a 500 answer changed the failover status to %+v; only an answer that proves the API works does", f)
	}
	d.claim.record("check", failover.Result{APICalls: 2, Outcome: failover.Assigned, Reason: "MASTER without the reserved IP"}, nil)
	if f := d.rep.snapshot().Failover; !f.Ready || f.Error != "" {
		t.Errorf("after a claim that moved the IP: failover %+v; want ready", f)
	}
}

// TestRecordClaimOutcome: the claim loop reports by the claim's typed
// outcome, not its reason text: already here and assigned hold the IP
// (assigned also records the move), yielding holds nothing and sets the
// note, cooling off (a refused move) holds nothing and records no move.
func TestRecordClaimOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		outcome     failover.Outcome
		held, moved bool
		note        bool
	}{
		{failover.AlreadyHere, true, false, false},
		{failover.Assigned, true, true, false},
		{failover.Yielding, false, false, true},
		{failover.CoolingOff, false, false, false},
		{failover.NoReservedIP, false, false, false},
	} {
		t.Run(tc.outcome.String(), func(t *testing.T) {
			t.Parallel()
			d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(), PollInterval: time.Second}, newMemStore(), Options{})
			d.onVRRP(report.VRRPMaster)
			// The same reason text for every outcome: only Outcome may matter.
			d.claim.record("vrrp BACKUP -> MASTER", failover.Result{Outcome: tc.outcome, APICalls: 1, Reason: "already here"}, nil)
			r := d.rep.snapshot().ReservedIP
			if r.Held != tc.held || (r.LastMoveAt != nil) != tc.moved || (r.Note != "") != tc.note {
				t.Errorf("reserved_ip %+v; want held %v, a move recorded %v, a note %v", r, tc.held, tc.moved, tc.note)
			}
		})
	}
}

// TestClaimLogNamesOutcome: the "reserved ip not moved" line in
// dynia-pull's JSON log carries the outcome's name, not its number.
func TestClaimLogNamesOutcome(t *testing.T) {
	t.Parallel()
	for _, o := range []failover.Outcome{failover.AlreadyHere, failover.CoolingOff, failover.NoReservedIP} {
		t.Run(o.String(), func(t *testing.T) {
			t.Parallel()
			var buf testutil.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, nil))
			d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(), PollInterval: time.Second}, newMemStore(), Options{Logger: log})
			d.onVRRP(report.VRRPMaster)
			d.claim.record("vrrp BACKUP -> MASTER", failover.Result{Outcome: o, Reason: "x"}, nil)
			var found bool
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec["msg"] != "reserved ip not moved" {
					continue
				}
				found = true
				if got, want := rec["outcome"], o.String(); got != want {
					t.Errorf("outcome logged as %#v, want %q: %s", got, want, line)
				}
			}
			if !found {
				t.Fatalf("no \"reserved ip not moved\" line in:\n%s", buf.String())
			}
		})
	}
}

// fileStoreWithState makes a file:// bucket under dir holding a one-node
// cluster's state ("shop", node amber-fox), and returns it with its URL's
// directory.
func fileStoreWithState(t *testing.T, dir string) (bucket.Store, string) {
	t.Helper()
	stateDir := filepath.Join(dir, "bucket")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	store, err := bucket.Open(context.Background(), "file://"+stateDir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := testState(1, 1)
	b, _ := st.Encode()
	if _, err := store.Put(context.Background(), cluster.StateKey(st.Name), b, bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	return store, stateDir
}
