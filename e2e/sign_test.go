package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/pull"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
	"github.com/dynia/dynia/internal/testutil"
)

// droplet is a sandbox droplet's directory (its "disk": root/ is its /).
func (e *sandboxEnv) droplet(id int) string {
	return filepath.Join(e.dir, "droplets", strconv.Itoa(id))
}

// nodeStore opens the bucket with a droplet's own credentials: what anyone
// with root on that droplet holds (its pull.json and spaces.json).
func (e *sandboxEnv) nodeStore(id int) bucket.Store {
	e.t.Helper()
	cfg, err := nodeconfig.Load(filepath.Join(e.droplet(id), "pull.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := pull.OpenStore(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// served is every droplet's rendered haproxy.cfg and keepalived.conf.
func (e *sandboxEnv) served(ids ...int) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		for _, f := range []string{"etc/haproxy/haproxy.cfg", "etc/keepalived/keepalived.conf"} {
			p := filepath.Join(e.droplet(id), "root", f)
			b, err := os.ReadFile(p)
			if err != nil {
				e.t.Fatal(err)
			}
			out[p] = string(b)
		}
	}
	return out
}

// rawReport is a node's report as the bucket holds it, unverified.
func rawReport(t *testing.T, store bucket.Store, name, id string) *report.Status {
	t.Helper()
	obj, err := store.Get(context.Background(), cluster.StatusKey(name, id), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := signing.Unwrap(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := report.DecodeStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pullMetric is a counter of dynia-pull now, from its metrics endpoint
// inside the droplet's namespace ns (e.namespace): the sample with label reason (when not "")
// or the unlabelled one; 0 when it has none yet (a labelled counter
// appears with its first count).
func pullMetric(ns, name, reason string) (float64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "3",
		"http://"+pull.DefaultMetricsAddr+"/metrics").Output()
	if err != nil {
		return 0, fmt.Errorf("metrics in %s: %w", ns, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		return 0, fmt.Errorf("metrics in %s: %w", ns, err)
	}
	for _, m := range fams[name].GetMetric() {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				got = l.GetValue()
			}
		}
		if got == reason {
			return m.GetCounter().GetValue(), nil
		}
	}
	return 0, nil
}

// TestNodeCredentialsCannotChangeOtherNodes is issue 14's second item end to
// end: everything a node's own credentials (its Spaces key, its report key)
// can write to the bucket changes nothing another node serves or acts on.
//
//  1. With node A's Spaces key, the state is rewritten (advert_interval,
//     B's backend drained): every node refuses it (state_error
//     "signature"), no haproxy.cfg or keepalived.conf changes, the
//     Reserved IP answers throughout, the CLI refuses it naming the
//     object. An older signed state put back is refused too ("replay").
//     The good object put back clears every node's state_error.
//  2. With A's Spaces key and A's own report key, B's report is forged (VRRP
//     FAULT, app unhealthy, a failed release, another WireGuard key) while
//     B's dynia-pull is paused: `node list -o json` shows B "invalid" and
//     unknown, `repair-ha --force` changes nothing, A never takes the forged
//     mesh key (its interface keeps B's real one, after it re-read B's
//     report), and `app status` does not show the failure.
func TestNodeCredentialsCannotChangeOtherNodes(t *testing.T) {
	e := upSandbox(t)
	const name = "sig"
	e.mustRun("node", "create-ha", "--name", name, "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "2m", "--image", e.demo("v1"))
	first := e.nodes(name)[0]
	early, err := e.nodeStore(first.DropletID).Get(context.Background(), cluster.StateKey(name), "")
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun("node", "add", "--name", name, "--timeout", "2m")
	e.waitUp(name)
	rip := e.reservedIP(name)
	rows := e.nodes(name)
	a, b := rows[0], rows[1]
	mallory := e.nodeStore(a.DropletID)
	ctx := context.Background()
	obj, err := mallory.Get(ctx, cluster.StateKey(name), "")
	if err != nil {
		t.Fatal(err)
	}
	good := obj.Body
	before := e.served(a.DropletID, b.DropletID)
	url := "http://" + rip + "/"

	refusedBy := func(reason string) {
		t.Helper()
		testutil.WaitFor(t, 60*time.Second, func() error {
			for _, r := range []nodeRow{a, b} {
				s := rawReport(t, mallory, name, r.ID)
				if !strings.HasPrefix(s.StateError, reason+": ") {
					return fmt.Errorf("node %s: state_error %q, want %s", r.ID, s.StateError, reason)
				}
			}
			return nil
		})
	}

	t.Run("state rewritten with a node's bucket key", func(t *testing.T) {
		tampered := bytes.Replace(good, []byte(`"advert_interval": 1`), []byte(`"advert_interval": 5`), 1)
		// B's backend drained too, the way a real change would read.
		i := bytes.Index(tampered, []byte(`"id": "`+b.ID+`"`))
		if i < 0 || bytes.Equal(tampered, good) {
			t.Fatalf("test setup: advert_interval or node %s not in the state", b.ID)
		}
		j := i + bytes.Index(tampered[i:], []byte(`"lifecycle": "ready"`))
		tampered = append(tampered[:j:j], append([]byte(`"lifecycle": "draining"`), tampered[j+len(`"lifecycle": "ready"`):]...)...)
		load := startLoad(url, 100*time.Millisecond, 3*time.Minute)
		if _, err := mallory.Put(ctx, cluster.StateKey(name), tampered, bucket.Cond{}); err != nil {
			t.Fatal(err)
		}
		refusedBy("signature")
		r := e.run("node", "list", "--name", name)
		if r.code != 1 || !strings.Contains(r.stderr, "/clusters/"+name+"/state.json") || !strings.Contains(r.stderr, "signature") {
			t.Errorf("node list on the rewritten state: exit %d, %s", r.code, r.stderr)
		}
		if _, err := mallory.Put(ctx, cluster.StateKey(name), early.Body, bucket.Cond{}); err != nil {
			t.Fatal(err)
		}
		refusedBy("replay")
		// Both read and refused the put-back state by now. The window in
		// which nothing may change is counted in the nodes' own polls:
		// each one has refused the replay (its apply failure counter) and
		// has since polled the same object again, answered 304 and left
		// alone, a few times.
		for _, r := range []nodeRow{a, b} {
			ns, since := e.namespace(r.DropletID), -1.0
			testutil.WaitFor(t, 60*time.Second, func() error {
				refusals, err := pullMetric(ns, "dynia_pull_apply_failures_total", "replay")
				if err != nil {
					return err
				}
				if refusals < 1 {
					return fmt.Errorf("node %s: no replay refusal counted", r.ID)
				}
				polls, err := pullMetric(ns, "dynia_pull_polls_not_modified_total", "")
				if err != nil {
					return err
				}
				if since < 0 {
					since = polls
				}
				if polls-since < 3 {
					return fmt.Errorf("node %s: %v polls of the refused state since, want 3", r.ID, polls-since)
				}
				return nil
			})
		}
		total, failed, _, answered := load.finish()
		t.Logf("while the state was rewritten: %d of %d requests failed, answered by %v", failed, total, answered)
		if failed != 0 {
			t.Errorf("%d of %d requests failed while nodes refused the state", failed, total)
		}
		if after := e.served(a.DropletID, b.DropletID); fmt.Sprint(after) != fmt.Sprint(before) {
			for p := range before {
				if after[p] != before[p] {
					t.Errorf("%s changed:\n%s", p, after[p])
				}
			}
		}
		if _, err := mallory.Put(ctx, cluster.StateKey(name), good, bucket.Cond{}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 60*time.Second, func() error {
			for _, r := range []nodeRow{a, b} {
				if s := rawReport(t, mallory, name, r.ID); s.StateError != "" || s.StateSignature != report.StateVerified {
					return fmt.Errorf("node %s: state_error %q, state_signature %q", r.ID, s.StateError, s.StateSignature)
				}
			}
			return nil
		})
		e.waitUp(name)
	})

	t.Run("report forged with a node's keys", func(t *testing.T) {
		realKey := rawReport(t, mallory, name, b.ID).Mesh.PublicKey
		aKey, err := signing.LoadPrivateKey(filepath.Join(e.droplet(a.DropletID), "root", "etc", "dynia", "report.key"))
		if err != nil {
			t.Fatal(err)
		}
		forgedWG, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		st := e.stateGeneration(name)
		// B's dynia-pull paused (its haproxy and keepalived serve on), so
		// its own reports do not overwrite the forgery.
		pid := e.pullPid(b.DropletID)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
		forged := report.Status{NodeID: b.ID, Cluster: name, AppliedGeneration: st, VRRPState: report.VRRPFault, AppHealthy: false,
			Mesh:      &report.MeshStatus{Interface: "dynia0", PublicKey: forgedWG.PublicKey().String(), Port: 51820},
			App:       &report.AppStatus{State: report.AppRunning, Release: 1, FailedRelease: 1, Error: "forged"},
			UpdatedAt: time.Now().UTC()}
		body, err := report.SignReport(forged, aKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mallory.Put(ctx, cluster.StatusKey(name, b.ID), body, bucket.Cond{}); err != nil {
			t.Fatal(err)
		}
		r := row(e.nodes(name), b.ID)
		if r.Health != "unknown" || !strings.Contains(r.HealthReason, "report signature invalid") || r.VRRPState != "" {
			t.Errorf("node list with B's report forged: %+v", r)
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(e.mustRun("node", "list", "--name", name, "-o", "json").stdout), &raw); err != nil {
			t.Fatal(err)
		}
		for _, m := range raw {
			if m["id"] == b.ID && m["report"] != "invalid" {
				t.Errorf("node list -o json: B's report %v, want invalid", m["report"])
			}
		}
		genBefore, holder := e.stateGeneration(name), e.ripHolder(rip)
		e.mustRun("node", "repair-ha", "--name", name, "--force")
		if g, h := e.stateGeneration(name), e.ripHolder(rip); g != genBefore || h != holder {
			t.Errorf("repair-ha --force acted on the forged report: generation %d → %d, Reserved IP holder %d → %d", genBefore, g, holder, h)
		}
		status := e.mustRun("app", "status", "--name", name, "-o", "json").stdout
		if strings.Contains(status, "forged") {
			t.Errorf("app status shows the forged failure:\n%s", status)
		}
		// A re-reads B's report at the latest a minute after it learned
		// B's key, refuses it, and keeps the key it has.
		logPath := filepath.Join(e.droplet(a.DropletID), "logs", "pull.log")
		testutil.WaitFor(t, 2*time.Minute, func() error {
			l, err := os.ReadFile(logPath)
			if err != nil {
				return err
			}
			if !bytes.Contains(l, []byte("peer report not believed")) {
				return fmt.Errorf("A has not re-read B's report yet")
			}
			return nil
		})
		aReport := func() *report.Status {
			// A's report is written after its next change or heartbeat.
			return rawReport(t, mallory, name, a.ID)
		}
		testutil.WaitFor(t, 90*time.Second, func() error {
			s := aReport()
			if s.Mesh == nil {
				return fmt.Errorf("A reports no mesh")
			}
			if s.UpdatedAt.Before(forged.UpdatedAt) {
				return fmt.Errorf("A has not reported since the forgery")
			}
			for _, p := range s.Mesh.Peers {
				if p.PublicKey == forged.Mesh.PublicKey {
					return fmt.Errorf("A's mesh has the forged key as a peer: %+v", p)
				}
				if p.NodeID == b.ID && p.PublicKey == realKey {
					return nil
				}
			}
			return fmt.Errorf("A's mesh peers %+v lack B's key %s", s.Mesh.Peers, realKey)
		})
		resume()
		e.waitUp(name)
		if r := row(e.nodes(name), b.ID); r.Health != "up" {
			t.Errorf("B after its dynia-pull resumed: %+v", r)
		}
	})
}

// stateGeneration is the state's generation as `cluster get` shows it.
func (e *sandboxEnv) stateGeneration(name string) int64 {
	e.t.Helper()
	var v struct {
		Generation int64 `json:"generation"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("cluster", "get", "--name", name, "-o", "json").stdout), &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Generation
}

// pullPid is the dynia-pull the sandbox runs on a droplet.
func (e *sandboxEnv) pullPid(id int) int {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.droplet(id), "pids", "pull.pid"))
	if err != nil {
		e.t.Fatal(err)
	}
	// "<pid> <start time>" (internal/procstat: a pid alone is recycled).
	pid, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return pid
}

// signedEdit replaces old with new in a signed state object's document and
// signs the result with the cluster's state key (in the test's CLI config
// directory): a document dynia's own key vouches for, which readers then
// decode and judge.
func (e *sandboxEnv) signedEdit(name string, obj []byte, old, new string) []byte {
	e.t.Helper()
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(e.config), "keys", name+"-????????.sign.key"))
	if len(m) != 1 {
		e.t.Fatalf("state key of %s: %d key files", name, len(m))
	}
	key, err := signing.LoadPrivateKey(m[0])
	if err != nil {
		e.t.Fatal(err)
	}
	payload, _, err := signing.Unwrap(obj)
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
