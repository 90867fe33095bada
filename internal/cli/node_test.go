package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/cluster"
)

// TestBadInput: each invalid flag value exits 2 with one line naming the
// value, before anything is written or asked of DigitalOcean: no request
// changes the bucket (the write probe included) and the API sees no call,
// except the catalog reads that judge --region and --size.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.mustRun("node", "create-ha", "--name", "exists", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--no-wait")
	if e.writes.Load() == 0 {
		t.Fatal("the bucket write counter saw none of create-ha's writes")
	}
	tests := []struct {
		name string
		args []string
		want string // in the one error line
		// catalog: GET /v2/regions and /v2/sizes are allowed (they are
		// how a region or size is known to exist); no other call is.
		catalog bool
	}{
		{"bad cluster name", []string{"node", "create-ha", "--name", "Bad_Name!", "--region", "sgp1", "--size", "s-1vcpu-1gb"}, `--name "Bad_Name!"`, false},
		{"missing name", []string{"node", "create-ha", "--region", "sgp1", "--size", "s-1vcpu-1gb"}, `--name: required`, false},
		{"region shape", []string{"node", "create-ha", "--name", "ok", "--region", "Singapore", "--size", "s-1vcpu-1gb"}, `--region "Singapore"`, false},
		{"unknown region", []string{"node", "create-ha", "--name", "ok", "--region", "xyz9", "--size", "s-1vcpu-1gb"}, `--region "xyz9"`, true},
		{"unknown size", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-99vcpu-1tb"}, `--size "s-99vcpu-1tb"`, true},
		{"size shape", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "HUGE!"}, `--size "HUGE!"`, false},
		{"bad dns domain", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dns-domain", "not a domain"}, `--dns-domain "not a domain"`, false},
		{"bad dns record", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dns-domain", "example.com", "--dns-record", "App_1"}, `--dns-record "App_1"`, false},
		{"bad cidr", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--admin-cidr", "1.2.3.4"}, `--admin-cidr "1.2.3.4"`, false},
		{"count 0", []string{"node", "add", "--name", "exists", "--count", "0"}, `--count 0`, false},
		{"count 11", []string{"node", "add", "--name", "exists", "--count", "11"}, `--count 11`, false},
		{"count text", []string{"node", "add", "--name", "exists", "--count", "two"}, `"two"`, false},
		{"unknown node", []string{"node", "remove", "--name", "exists", "--node", "blue-whale", "--yes"}, `--node "blue-whale"`, false},
		{"unknown node make-active", []string{"node", "make-active", "--name", "exists", "--node", "blue-whale"}, `--node "blue-whale"`, false},
		{"remove from no such cluster", []string{"node", "remove", "--name", "ghost", "--node", "blue-whale", "--yes"}, `ghost`, false},
		{"create-ha: existing cluster, other size", []string{"node", "create-ha", "--name", "exists", "--region", "sgp1", "--size", "s-2vcpu-2gb"}, `--size "s-2vcpu-2gb"`, false},
		{"missing node token file", []string{"node", "add", "--name", "exists", "--node-token-file", "/nonexistent/tok"}, `--node-token-file "/nonexistent/tok"`, false},
		{"bad node id", []string{"node", "make-active", "--name", "exists", "--node", "Blue Whale"}, `--node "Blue Whale"`, false},
		{"remove without confirm", []string{"node", "remove", "--name", "exists", "--node", "blue-whale"}, `--yes: required to remove node "blue-whale"`, false},
		{"no such cluster", []string{"node", "add", "--name", "ghost"}, `ghost`, false},
		{"repair needs a mode", []string{"node", "repair-ha", "--name", "exists"}, `--check-only or --force`, false},
		{"bad output", []string{"node", "list", "--name", "exists", "-o", "yaml"}, `--output "yaml"`, false},
		{"unknown flag", []string{"node", "add", "--name", "exists", "--colour", "red"}, `unknown flag: --colour`, false},
		{"bad state url", []string{"--state", "ftp://x", "node", "list", "--name", "exists"}, `--state "ftp://x"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.sim.Calls())
			writesBefore := e.writes.Load()
			objsBefore, _ := e.bucket.List(t.Context(), "")
			r := e.run(tc.args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want 2\nstderr: %s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("stderr %q: want one line containing %q", r.stderr, tc.want)
			}
			for _, c := range e.sim.Calls()[before:] {
				if !tc.catalog || c.Method != "GET" || (c.Path != "/v2/regions" && c.Path != "/v2/sizes") {
					t.Errorf("API call on bad input: %s %s", c.Method, c.Path)
				}
			}
			if n := e.writes.Load() - writesBefore; n != 0 {
				t.Errorf("%d bucket write requests on bad input", n)
			}
			objsAfter, _ := e.bucket.List(t.Context(), "")
			if len(objsAfter) != len(objsBefore) {
				t.Errorf("bucket changed on bad input: %d → %d objects", len(objsBefore), len(objsAfter))
			}
		})
	}
}

// TestNodeLifecycle drives the seed's commands end to end against the
// simulator and versitygw, checking state, simulator and list agree.
func TestNodeLifecycle(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("myapp")
	defer stop()

	e.mustRun("node", "create-ha", "--name", "myapp", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	st := e.consistent("myapp")
	if len(st.Nodes) != 1 || st.ReservedIP == "" || st.Nodes[0].Priority != 150 {
		t.Fatalf("after create-ha: %+v", st)
	}
	// Re-running create-ha reuses everything.
	calls := len(e.sim.Calls())
	r := e.mustRun("node", "create-ha", "--name", "myapp", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	for _, c := range e.sim.Calls()[calls:] {
		if c.Method == "POST" {
			t.Errorf("second create-ha created something: %s %s", c.Method, c.Path)
		}
	}
	if !strings.Contains(r.stderr, "reused") {
		t.Errorf("second create-ha does not say it reused: %s", r.stderr)
	}

	e.mustRun("node", "add", "--name", "myapp", "--count", "2")
	st = e.consistent("myapp")
	if len(st.Nodes) != 3 {
		t.Fatalf("after add --count 2: %d nodes", len(st.Nodes))
	}

	r = e.mustRun("node", "list", "--name", "myapp", "-o", "json")
	var rows []NodeRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}
	if len(rows) != 3 || rows[0].Role != "active" || rows[0].Status != "up" || rows[0].PrivateIP == "" {
		t.Fatalf("list rows: %+v", rows)
	}
	r = e.mustRun("node", "list", "--name", "myapp")
	if !strings.HasPrefix(r.stdout, "NODE ID\tROLE\tPRIORITY\tPUBLIC IP\tPRIVATE IP\tSTATUS\tVRRP\tRESERVED IP\tVERSION\n") {
		t.Fatalf("list header: %q", r.stdout)
	}
	if strings.Contains(r.stderr, "note:") || !strings.Contains(r.stdout, "\tholds\t") {
		t.Fatalf("list of a consistent cluster: a note, or no holder shown:\n%s%s", r.stdout, r.stderr)
	}

	standby := rows[2].ID
	e.mustRun("node", "make-active", "--name", "myapp", "--node", standby)
	st = e.consistent("myapp")
	if st.Active().ID != standby || st.Active().Priority != 150 {
		t.Fatalf("make-active: active %+v", st.Active())
	}

	// Remove a standby, then the active node.
	other := rows[1].ID
	e.mustRun("node", "remove", "--name", "myapp", "--node", other, "--yes")
	st = e.consistent("myapp")
	if st.Node(other) != nil || len(st.Nodes) != 2 {
		t.Fatalf("after removing a standby: %+v", st.Nodes)
	}
	e.mustRun("node", "remove", "--name", "myapp", "--node", standby, "--yes")
	st = e.consistent("myapp")
	if st.Node(standby) != nil || len(st.Nodes) != 1 || st.Active() == nil {
		t.Fatalf("after removing the active node: %+v", st.Nodes)
	}
	if r := e.run("node", "remove", "--name", "myapp", "--node", st.Nodes[0].ID, "--yes"); r.code != ExitUsage {
		t.Fatalf("removing the last node without --force: exit %d", r.code)
	}

	r = e.mustRun("cluster", "get", "--name", "myapp", "-o", "json")
	var view ClusterView
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil || view.ReservedIP != st.ReservedIP || view.ActiveNode != st.Nodes[0].ID {
		t.Fatalf("cluster get: %v %+v", err, view)
	}

	e.mustRun("cluster", "destroy", "--name", "myapp", "--yes")
	if n := len(e.sim.Droplets()); n != 0 {
		t.Fatalf("%d droplets left after destroy", n)
	}
	if n := len(e.sim.ReservedIPs()); n != 0 {
		t.Fatalf("%d reserved IPs left after destroy", n)
	}
	if n := len(e.sim.Firewalls()); n != 0 {
		t.Fatalf("%d firewalls left after destroy", n)
	}
	if r := e.run("cluster", "get", "--name", "myapp"); r.code != ExitUsage {
		t.Fatalf("cluster get after destroy: exit %d", r.code)
	}
}

// TestRepairHA injects drift behind dynia's back and checks repair-ha finds
// and fixes each.
func TestRepairHA(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("fixme")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "fixme", "--region", "nyc3", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "fixme", "--count", "2")
	if r := e.run("node", "repair-ha", "--name", "fixme", "--check-only"); r.code != 0 {
		t.Fatalf("clean cluster: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	st := e.state("fixme")
	// 1. A standby's droplet deleted behind our back.
	var victim = st.Nodes[2]
	e.sim.DeleteDropletBehindBack(victim.DropletID)
	// 2. The RIP unassigned.
	e.sim.UnassignReservedIP(st.ReservedIP)
	// 3. An orphan droplet tagged for the cluster.
	cl, err := NewFactoryForTest(e).Cloud()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateDroplets(t.Context(), []cloudDropletSpec{{Name: "fixme-lost-cat", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: "debian-12-x64", Tags: nodeTags("fixme", "lost-cat")}}); err != nil {
		t.Fatal(err)
	}

	r := e.run("node", "repair-ha", "--name", "fixme", "--check-only")
	if r.code != ExitFailure {
		t.Fatalf("check-only with drift: exit %d", r.code)
	}
	for _, want := range []string{"no longer exists", "is on no droplet", "no node of the state owns it"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check-only output lacks %q:\n%s", want, r.stdout)
		}
	}
	e.mustRun("node", "repair-ha", "--name", "fixme", "--force")
	st = e.consistent("fixme")
	if len(st.Nodes) != 2 || st.Node(victim.ID) != nil {
		t.Fatalf("after repair: %+v", st.Nodes)
	}
	if r := e.run("node", "repair-ha", "--name", "fixme", "--check-only"); r.code != 0 {
		t.Fatalf("drift left after --force: %s", r.stdout)
	}
}

// TestStateCheck: `state check` finds conditional writes honoured on both
// backends (a file:// directory, versitygw) and prints no secret.
func TestStateCheck(t *testing.T) {
	for _, tc := range []struct {
		backend string
		env     func(*testing.T) *testEnv
	}{{"file", newEnv}, {"s3", newS3Env}} {
		t.Run(tc.backend, func(t *testing.T) {
			e := tc.env(t)
			r := e.mustRun("state", "check", "-o", "json")
			var got struct {
				ConditionalWrites bool     `json:"conditional_writes"`
				Problems          []string `json:"problems"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !got.ConditionalWrites {
				t.Fatalf("state check on %s: %v %+v", tc.backend, err, got)
			}
			for _, secret := range e.secrets() {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Fatal("state check printed a secret")
				}
			}
		})
	}
}

func TestCreateDryRun(t *testing.T) {
	e := newEnv(t)
	before := len(e.sim.Calls())
	r := e.mustRun("node", "create-ha", "--name", "plan", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dry-run")
	if !strings.Contains(r.stdout, "Plan for cluster plan") || !strings.Contains(r.stdout, "#cloud-config") {
		t.Fatalf("dry run output:\n%s", r.stdout)
	}
	for _, secret := range e.secrets() {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Fatalf("dry run printed a secret")
		}
	}
	if n := len(e.sim.Calls()) - before; n != 0 {
		t.Fatalf("dry run made %d API calls", n)
	}
	if objs, _ := e.bucket.List(t.Context(), ""); len(objs) != 0 {
		t.Fatalf("dry run wrote %d objects", len(objs))
	}
}

// TestCreateBootstrap: with --bootstrap the droplet starts from a stock
// image and its user-data fetches the dynia-pull the CLI uploaded, through
// a presigned URL, checking its sha256.
func TestCreateBootstrap(t *testing.T) {
	e := newS3Env(t) // droplets fetch dynia-pull by a presigned URL: S3 only
	bin := filepath.Join(t.TempDir(), "dynia-pull")
	content := []byte("#!/bin/sh\necho pretend dynia-pull\n")
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	e.env["DYNIA_PULL_BINARY"] = bin
	e.mustRun("node", "create-ha", "--name", "boot", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--bootstrap", "--no-wait")
	ds := e.sim.Droplets()
	if len(ds) != 1 || ds[0].ImageSlug != "debian-12-x64" {
		t.Fatalf("droplets: %+v", ds)
	}
	cfg, err := cloudinit.Parse([]byte(ds[0].UserData))
	if err != nil {
		t.Fatal(err)
	}
	var url, sum string
	for _, f := range cfg.WriteFiles {
		switch f.Path {
		case cloudinit.PullBinaryURLPath:
			url = strings.TrimSpace(f.Content)
		case cloudinit.PullBinarySHA256Path:
			sum = strings.Fields(f.Content)[0]
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want := sha256.Sum256(content)
	if resp.StatusCode != 200 || !bytes.Equal(got, content) || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("presigned download: %d, %d bytes, sha %s", resp.StatusCode, len(got), sum)
	}
	// A second node reuses the uploaded binary (no second PUT of it).
	r := e.mustRun("node", "add", "--name", "boot", "--no-wait")
	if !strings.Contains(r.stderr, "(unchanged)") {
		t.Fatalf("second upload not skipped: %s", r.stderr)
	}
}

// TestCreateWithDNS: the A record points at the Reserved IP, is reused on a
// re-run, and goes away with the cluster.
func TestCreateWithDNS(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("web")
	defer stop()
	req, _ := http.NewRequest("POST", e.api.URL+"/v2/domains", strings.NewReader(`{"name":"example.com"}`))
	req.Header.Set("Authorization", "Bearer "+fullToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create domain: %v %v", err, resp)
	}
	resp.Body.Close()
	args := []string{"node", "create-ha", "--name", "web", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dns-domain", "example.com", "--dns-record", "app"}
	e.mustRun(args...)
	st := e.state("web")
	if st.DNS == nil || st.DNS.Domain != "example.com" || st.DNS.Name != "app" || st.DNS.RecordID == "" || !st.DNS.Created {
		t.Fatalf("state DNS: %+v", st.DNS)
	}
	records := func() []string {
		req, _ := http.NewRequest("GET", e.api.URL+"/v2/domains/example.com/records?type=A", nil)
		req.Header.Set("Authorization", "Bearer "+fullToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Records []struct {
				Name string `json:"name"`
				Data string `json:"data"`
			} `json:"domain_records"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range body.Records {
			out = append(out, r.Name+"="+r.Data)
		}
		return out
	}
	if got := records(); len(got) != 1 || got[0] != "app="+st.ReservedIP {
		t.Fatalf("A records: %v, want app=%s", got, st.ReservedIP)
	}
	e.mustRun(args...) // re-run: the record is reused, not duplicated
	if got := records(); len(got) != 1 {
		t.Fatalf("A records after re-run: %v", got)
	}
	e.mustRun("cluster", "destroy", "--name", "web", "--yes")
	if got := records(); len(got) != 0 {
		t.Fatalf("A records after destroy: %v", got)
	}
}

// TestRemoveResumes: a remove that died after marking the node removing
// (droplet alive, or already destroyed) is finished by running it again,
// since the node stays in the state until its droplet is gone.
func TestRemoveResumes(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("again")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "again", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "again", "--count", "2")
	st := e.state("again")
	store := e.signedStore()
	alive, gone := st.Nodes[1], st.Nodes[2]
	for _, n := range []cluster.Node{alive, gone} {
		if _, err := store.Update(t.Context(), "again", func(s *cluster.State) (*cluster.State, error) {
			return cluster.MarkRemoving(s, n.ID)
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.sim.DeleteDropletBehindBack(gone.DropletID)
	for _, n := range []cluster.Node{alive, gone} {
		e.mustRun("node", "remove", "--name", "again", "--node", n.ID, "--yes")
	}
	st = e.consistent("again")
	if len(st.Nodes) != 1 || st.Node(alive.ID) != nil || st.Node(gone.ID) != nil {
		t.Fatalf("after resumed removes: %+v", st.Nodes)
	}
	if r := e.run("node", "remove", "--name", "again", "--node", alive.ID, "--yes"); r.code != ExitUsage {
		t.Fatalf("removing a removed node again: exit %d, want 2", r.code)
	}
}
