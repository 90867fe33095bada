package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

func (e *testEnv) rawState(name string) []byte {
	e.t.Helper()
	obj, err := e.bucket.Get(context.Background(), cluster.StateKey(name), "")
	if err != nil {
		e.t.Fatal(err)
	}
	return obj.Body
}

func (e *testEnv) putRaw(key string, b []byte) {
	e.t.Helper()
	if _, err := e.bucket.Put(context.Background(), key, b, bucket.Cond{}); err != nil {
		e.t.Fatal(err)
	}
}

// mutations counts the DO API calls that change something.
func (e *testEnv) mutations() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.Method != http.MethodGet && c.Method != http.MethodHead {
			n++
		}
	}
	return n
}

// TestStateAndReportSigning: the CLI signs the state with a key it keeps
// 0600 beside the cluster key and hands droplets the public half and each
// its own report key. A state changed by anyone holding the bucket key
// (here: the test's own bucket client, as a node's would be) — or an old
// one put back — stops every command before any write or DO call, naming
// the object, until `state resign`. A report not signed with its node's key
// shows as invalid and unknown and moves nothing, not even for the holder.
func TestStateAndReportSigning(t *testing.T) {
	e := newEnv(t)
	const name = "signed"
	h, stop := e.reportNodes(name)
	defer stop()
	e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
	old := e.rawState(name)
	createdGen := e.state(name).Generation
	e.mustRun("node", "add", "--name", name, "--count", "1")
	e.waitReported(name)
	st := e.state(name)

	// The key: 0600 beside the cluster key, named by the state.
	base, err := NewFactoryForTest(e).keyBase(name)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(base + ".sign.key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state key file: %v, mode %v", err, fi)
	}
	key, err := signing.LoadPrivateKey(base + ".sign.key")
	if err != nil {
		t.Fatal(err)
	}
	if st.SigningKey != signing.PublicKeyString(signing.Public(key)) {
		t.Fatalf("state names signing key %q, the key file holds another", st.SigningKey)
	}
	// Each droplet: the state's public key in pull.json, its own report
	// key (0600), whose public half is its node's report_key.
	for _, n := range st.Nodes {
		var pullJSON, reportKey *cloudinit.File
		for _, d := range e.sim.Droplets() {
			if d.ID != n.DropletID {
				continue
			}
			cc, err := cloudinit.Parse([]byte(d.UserData))
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range cc.WriteFiles {
				switch f.Path {
				case cloudinit.PullConfigPath:
					pullJSON = &cc.WriteFiles[i]
				case cloudinit.ReportKeyPath:
					reportKey = &cc.WriteFiles[i]
				}
			}
		}
		if pullJSON == nil || reportKey == nil || reportKey.Permissions != "0600" {
			t.Fatalf("node %s: pull.json %v, report key %+v", n.ID, pullJSON != nil, reportKey)
		}
		cfg, err := nodeconfig.Decode([]byte(pullJSON.Content))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.StatePublicKey != st.SigningKey || cfg.ReportKeyFile != cloudinit.ReportKeyPath || cfg.AcceptedStateFile == "" {
			t.Errorf("node %s pull.json: state_public_key %q (want %q), report_key_file %q, accepted_state_file %q",
				n.ID, cfg.StatePublicKey, st.SigningKey, cfg.ReportKeyFile, cfg.AcceptedStateFile)
		}
		// The replay floor from the user-data: the state the droplet was
		// made from (create-ha's nodes: an early one; node add's: at
		// least the state create-ha left).
		if cfg.MinStateGeneration < 1 || cfg.MinStateGeneration > st.Generation ||
			(n.ID == st.Nodes[len(st.Nodes)-1].ID && cfg.MinStateGeneration < createdGen) {
			t.Errorf("node %s pull.json: min_state_generation %d, want 1–%d (at least %d for the added node)",
				n.ID, cfg.MinStateGeneration, st.Generation, createdGen)
		}
		k := e.reportKey(n)
		if k == nil || signing.PublicKeyString(signing.Public(k)) != n.ReportKey {
			t.Errorf("node %s: its user-data's report key is not the state's report_key %q", n.ID, n.ReportKey)
		}
	}
	rows := e.nodeRows(name)
	for _, r := range rows {
		if r.Report != "verified" || r.Health != ops.HealthUp {
			t.Fatalf("node list before any forgery: %+v", r)
		}
	}
	for _, args := range [][]string{{"node", "list", "--name", name, "-o", "json"}, {"cluster", "get", "--name", name, "-o", "json"}} {
		out := e.mustRun(args...)
		for _, n := range st.Nodes {
			if k := e.reportKey(n); strings.Contains(out.stdout+out.stderr, signing.PrivateKeyString(k)) {
				t.Fatalf("dynia %v prints node %s's report key", args, n.ID)
			}
		}
	}

	good := e.rawState(name)
	tampered := bytes.Replace(good, []byte(`"advert_interval": 1`), []byte(`"advert_interval": 7`), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("test setup: advert_interval not in the state")
	}
	obj := e.bucket.String() + "/clusters/" + name + "/state.json"
	for _, tc := range []struct {
		what, want string
		body       []byte
	}{
		{"advert_interval changed", "signature does not verify", tampered},
		{"generation 1 put back", "older than", old},
	} {
		t.Run(tc.what, func(t *testing.T) {
			e.putRaw(cluster.StateKey(name), tc.body)
			calls, writes := e.mutations(), e.writes.Load()
			for _, args := range [][]string{
				{"node", "list", "--name", name, "-o", "json"},
				{"cluster", "get", "--name", name},
				{"node", "repair-ha", "--name", name, "--force"},
				{"node", "add", "--name", name},
				{"app", "status", "--name", name},
			} {
				r := e.run(args...)
				if r.code != ExitFailure || !strings.Contains(r.stderr, obj) || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("dynia %s: exit %d, stderr %q; want exit 1 naming %s and %q", strings.Join(args, " "), r.code, r.stderr, obj, tc.want)
				}
			}
			if d := e.mutations() - calls; d != 0 {
				t.Errorf("%d DO API writes on a refused state", d)
			}
			if d := e.writes.Load() - writes; d != 0 {
				t.Errorf("%d bucket writes on a refused state", d)
			}
			e.putRaw(cluster.StateKey(name), good)
			e.mustRun("node", "list", "--name", name)
		})
	}

	// Forged reports: for a standby (claiming it is down), then for the
	// holder (claiming FAULT), signed with a stranger's key, then the
	// standby's genuine report copied to the holder's key.
	holder, standby := *st.Active(), st.Nodes[0]
	if standby.ID == holder.ID {
		standby = st.Nodes[1]
	}
	stranger, err := signing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	forge := func(id string, key ed25519.PrivateKey) {
		s := report.Status{NodeID: id, Cluster: name, AppliedGeneration: st.Generation, VRRPState: report.VRRPFault,
			AppHealthy: false, UpdatedAt: time.Now().UTC()}
		b, err := report.SignReport(s, key)
		if err != nil {
			t.Fatal(err)
		}
		e.putRaw(cluster.StatusKey(name, id), b)
	}
	h.silence(standby.ID)
	forge(standby.ID, stranger)
	r := row(e.nodeRows(name), standby.ID)
	if r.Report != "invalid" || r.Health != ops.HealthUnknown || !strings.Contains(r.HealthReason, "report signature invalid") || r.VRRPState != "" {
		t.Fatalf("standby with a forged report: %+v", r)
	}
	if r := e.run("node", "repair-ha", "--name", name, "--check-only"); r.code != 0 {
		t.Fatalf("a forged standby report made drift: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	h.silence(holder.ID)
	forge(holder.ID, stranger)
	r = row(e.nodeRows(name), holder.ID)
	if r.Report != "invalid" || r.Health != ops.HealthUnknown || !r.HoldsReservedIP {
		t.Fatalf("holder with a forged report: %+v", r)
	}
	calls := e.mutations()
	rr := e.run("node", "repair-ha", "--name", name, "--force")
	if rr.code != ExitFailure || !strings.Contains(rr.stderr, "report is not believed") {
		t.Fatalf("repair-ha --force with a forged holder report: exit %d\n%s%s", rr.code, rr.stdout, rr.stderr)
	}
	if d := e.mutations() - calls; d != 0 {
		t.Fatalf("repair-ha acted on a forged report: %d DO API writes", d)
	}
	if e.ripHolder(st.ReservedIP) != holder.DropletID {
		t.Fatal("the Reserved IP moved")
	}
	// The standby's own report (signed with its real key) at the holder's key.
	standbyOwn, err := report.SignReport(report.Status{NodeID: standby.ID, Cluster: name, AppliedGeneration: st.Generation, AppHealthy: true,
		VRRPState: report.VRRPMaster, UpdatedAt: time.Now().UTC()}, e.reportKey(standby))
	if err != nil {
		t.Fatal(err)
	}
	e.putRaw(cluster.StatusKey(name, holder.ID), standbyOwn)
	if r := row(e.nodeRows(name), holder.ID); r.Report != "invalid" || !strings.Contains(r.HealthReason, "signature invalid") {
		t.Fatalf("another node's genuine report at the holder's key: %+v", r)
	}

	// The state changed outside dynia, then resigned as it is.
	e.putRaw(cluster.StateKey(name), tampered)
	e.mustRun("state", "resign", "--name", name, "--yes")
	after := e.state(name)
	if after.HA.AdvertInterval != 7 || after.Generation <= st.Generation || after.SigningKey != st.SigningKey {
		t.Fatalf("after resign: advert %v, generation %d (was %d), key %q", after.HA.AdvertInterval, after.Generation, st.Generation, after.SigningKey)
	}
	if r := e.run("state", "resign", "--name", name); r.code != ExitUsage {
		t.Fatalf("resign without --yes: exit %d", r.code)
	}
}

func (e *testEnv) nodeRows(name string) []NodeRow {
	e.t.Helper()
	var rows []NodeRow
	out := e.mustRun("node", "list", "--name", name, "-o", "json")
	if err := json.Unmarshal([]byte(out.stdout), &rows); err != nil {
		e.t.Fatalf("node list -o json: %v\n%s", err, out.stdout)
	}
	return rows
}

func row(rows []NodeRow, id string) NodeRow {
	for _, r := range rows {
		if r.ID == id {
			return r
		}
	}
	return NodeRow{}
}

// TestExposedStateKeyIsBadInput: a state key file group or world may read
// is bad input: every command on the cluster exits 2 with one line naming
// the file and its mode, before any DO API call or bucket request (the
// state is not even read). After chmod 600 the same commands work.
func TestExposedStateKeyIsBadInput(t *testing.T) {
	e := newEnv(t)
	const name = "exposed"
	stop := e.fakeNodes(name)
	defer stop()
	e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
	base, err := NewFactoryForTest(e).keyBase(name)
	if err != nil {
		t.Fatal(err)
	}
	path := base + ".sign.key"
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"cluster", "get", "--name", name},
			{"node", "list", "--name", name},
			{"node", "add", "--name", name},
			{"node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb"},
			{"app", "status", "--name", name},
			{"state", "resign", "--name", name, "--yes"},
		} {
			t.Run(fmt.Sprintf("%04o %s", mode, strings.Join(args[:2], " ")), func(t *testing.T) {
				calls, requests := len(e.sim.Calls()), e.requests.Load()
				wantUsage(t, e.run(args...), "state key "+path+":", fmt.Sprintf("mode %04o", mode))
				if n := len(e.sim.Calls()) - calls; n != 0 {
					t.Errorf("%d DO API calls with an exposed state key", n)
				}
				if n := e.requests.Load() - requests; n != 0 {
					t.Errorf("%d bucket requests with an exposed state key", n)
				}
			})
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("cluster", "get", "--name", name)
}
