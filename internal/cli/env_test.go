package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
	"github.com/dynia/dynia/internal/testutil"
)

// testEnv is a simulated DigitalOcean (dosim, in-process) and a state
// store, with a dynia config whose current context points at both. The
// store is a file:// directory (newEnv: no root, no S3 server, runs under
// -short) or a real S3 server, versitygw (newS3Env: an integration test).
type testEnv struct {
	t   *testing.T
	sim *dosim.Server
	api *httptest.Server
	// s3 is the S3 server of newS3Env; nil for a file:// state.
	s3     *testutil.S3Server
	cfg    string
	env    map[string]string
	bucket bucket.Store
	// writes counts the bucket requests other than reads (GET, HEAD,
	// List) that dynia (not the test's own bucket client) sent: PUTs,
	// DELETEs, POSTs.
	writes atomic.Int64
	// requests counts every bucket request dynia sent, reads included.
	requests atomic.Int64
	// onBucketWrite, when set, is called before each bucket write dynia
	// sends (a test acting between a command's checks and its writes).
	onBucketWrite func()
	// store, when set, is the state store every run uses instead of
	// opening the context's (a file:// store wrapped by a test).
	store bucket.Store
	// requestTimeout, when set, bounds each DO API attempt of every run
	// (tests of timeouts; the default is cloud.Options' 60 s).
	requestTimeout time.Duration
	// stuckAfter, when set, is the age at which a droplet still "new" is
	// one that never becomes active (Factory.StuckAfter).
	stuckAfter time.Duration
}

// writeCounter passes requests on, counting those that change the bucket
// (n) and, when all is set, every one.
type writeCounter struct {
	next http.RoundTripper
	n    *atomic.Int64
	all  *atomic.Int64
	// onWrite, when set, runs before a write is passed on.
	onWrite func()
}

func (c writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.n.Add(1)
		if c.onWrite != nil {
			c.onWrite()
		}
	}
	if c.all != nil {
		c.all.Add(1)
	}
	return c.next.RoundTrip(r)
}

// countingStore is writeCounter for a store dynia gets through
// Factory.StoreOverride (a file:// state): Put and Delete count as writes
// (n), every call in all.
type countingStore struct {
	bucket.Store
	n, all  *atomic.Int64
	onWrite func()
}

func (c countingStore) write() {
	c.n.Add(1)
	c.all.Add(1)
	if c.onWrite != nil {
		c.onWrite()
	}
}

func (c countingStore) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	c.all.Add(1)
	return c.Store.Get(ctx, key, ifNoneMatch)
}

func (c countingStore) List(ctx context.Context, prefix string) ([]bucket.Info, error) {
	c.all.Add(1)
	return c.Store.List(ctx, prefix)
}

func (c countingStore) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	c.write()
	return c.Store.Put(ctx, key, body, cond)
}

func (c countingStore) Delete(ctx context.Context, key string) error {
	c.write()
	return c.Store.Delete(ctx, key)
}

const fullToken = "test-full-token"
const nodeToken = "test-node-token"

// newEnv is the default environment of the command tests: the simulator
// in-process and the state in a file:// directory. It needs no root and
// no S3 server, so it runs under -short. A simulator's API URL is not
// DO's, so the CLI accepts a file:// state with it
// (checkStateReachableByDroplets), as it does in the sandbox.
func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e, dir := newSimEnv(t)
	stateDir := filepath.Join(dir, "state")
	c := &Config{path: filepath.Join(dir, "config.yaml"), CurrentContext: "test", Contexts: map[string]*Context{
		"test": {State: "file://" + stateDir, APIURL: e.api.URL, NodeTokenFile: filepath.Join(dir, "node-token")},
	}}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := bucket.Open(context.Background(), "file://"+stateDir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg, e.bucket = c.path, b
	return e
}

// newS3Env is newEnv with the state on a real S3 server (versitygw) the
// context reaches with a Spaces endpoint, region and credentials file: for
// what only S3 has (conditional PUTs over HTTP, answers lost on the wire,
// write counts over HTTP, the nodes' Spaces key and endpoint). It is an
// integration test: skipped under -short.
func newS3Env(t *testing.T) *testEnv {
	t.Helper()
	testutil.Integration(t)
	e, dir := newSimEnv(t)
	s3 := testutil.StartVersityGW(t)
	credFile := filepath.Join(dir, "spaces.json")
	cred, _ := json.Marshal(map[string]string{"access_key_id": s3.AccessKeyID, "secret_access_key": s3.SecretAccessKey})
	if err := os.WriteFile(credFile, cred, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{path: filepath.Join(dir, "config.yaml"), CurrentContext: "test", Contexts: map[string]*Context{
		"test": {
			State: s3.URL("dynia"), SpacesEndpoint: s3.Endpoint, SpacesRegion: s3.Region, PathStyle: true,
			SpacesCredentialsFile: credFile, APIURL: e.api.URL, NodeTokenFile: filepath.Join(dir, "node-token"),
		},
	}}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := bucket.Open(context.Background(), s3.URL("dynia"), bucket.Options{
		Endpoint: s3.Endpoint, Region: s3.Region, PathStyle: true, AccessKeyID: s3.AccessKeyID, SecretAccessKey: s3.SecretAccessKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.s3, e.cfg, e.bucket = s3, c.path, b
	return e
}

// newSimEnv starts the DO simulator (the tokens, an image in sgp1 and
// nyc3) and writes the node token file into the returned directory; the
// caller adds the state and the config.
func newSimEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	sim := dosim.New(dosim.Options{})
	sim.AddToken(fullToken, dosim.FullScopes()...)
	sim.AddToken(nodeToken, dosim.NodeScopes()...)
	for _, r := range []string{"sgp1", "nyc3"} {
		sim.RegisterImage(dosim.Image{Name: "dynia-node-test-1", Regions: []string{r}, CreatedAt: time.Now().Add(-time.Hour)})
	}
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-token"), []byte(nodeToken), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, sim: sim, api: api,
		env: map[string]string{"DIGITALOCEAN_ACCESS_TOKEN": fullToken, "DYNIA_JOURNAL_DIR": filepath.Join(dir, "journal")}}, dir
}

// secrets are the environment's credentials no output may show: the
// tokens and, on S3, the Spaces secret.
func (e *testEnv) secrets() []string {
	s := []string{fullToken, nodeToken}
	if e.s3 != nil {
		s = append(s, e.s3.SecretAccessKey)
	}
	return s
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs dynia in-process, like the binary, against the environment.
func (e *testEnv) run(args ...string) result {
	e.t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	f.Getenv = func(k string) string { return e.env[k] }
	f.CloudOptions = cloud.Options{RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, PollMax: 50 * time.Millisecond, RequestTimeout: e.requestTimeout}
	f.BucketHTTPClient = &http.Client{Transport: writeCounter{next: http.DefaultTransport, n: &e.writes, all: &e.requests,
		onWrite: e.onBucketWrite}}
	// An S3 state is counted by its HTTP requests (BucketHTTPClient), a
	// file:// one (or a test's own store) as the commands call it.
	count := func(b bucket.Store) bucket.Store {
		return countingStore{Store: b, n: &e.writes, all: &e.requests, onWrite: e.onBucketWrite}
	}
	if e.s3 == nil {
		f.WrapStore = count
	}
	if e.store != nil {
		f.StoreOverride = count(e.store)
	}
	f.StuckAfter = e.stuckAfter
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := Run(ctx, f, append([]string{"--config", e.cfg}, args...))
	return result{code, out.String(), errOut.String()}
}

func (e *testEnv) mustRun(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("dynia %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (e *testEnv) state(name string) *cluster.State {
	e.t.Helper()
	st, _, err := e.signedStore().Load(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// signedStore is the state store with the test CLI's own state keys (the
// files `dynia` keeps beside its config), as `dynia` opens it.
func (e *testEnv) signedStore() *cluster.Store {
	e.t.Helper()
	return cluster.NewSignedStore(e.bucket, NewFactoryForTest(e).stateKeys())
}

// reportKey is the report key node id's droplet got in its user-data, as
// dynia-pull on that droplet reads it (nil: none, or no droplet yet).
func (e *testEnv) reportKey(n cluster.Node) ed25519.PrivateKey {
	for _, d := range e.sim.Droplets() {
		if d.ID != n.DropletID {
			continue
		}
		cc, err := cloudinit.Parse([]byte(d.UserData))
		if err != nil {
			return nil
		}
		for _, f := range cc.WriteFiles {
			if f.Path == cloudinit.ReportKeyPath {
				k, err := signing.ParsePrivateKey(f.Content)
				if err != nil {
					return nil
				}
				return k
			}
		}
	}
	return nil
}

// fakeNodes stands in for dynia-pull on every node (the sandbox tests run
// the real one): each node reports the current generation applied, up.
func (e *testEnv) fakeNodes(name string) (stop func()) {
	_, stop = e.reportNodes(name)
	return stop
}

// nodeHealth decides, per node, whether the report reportNodes writes for it
// says it is up (the default), down (VRRP FAULT, app unhealthy) or stale
// (its last report is old).
type nodeHealth struct {
	mu    sync.Mutex
	down  map[string]bool
	stale map[string]bool
	// silent nodes get no report from reportNodes (a test writes its own).
	silent map[string]bool
	// version is the dynia-pull version a node reports; upgrade, when
	// set, the min_pull_version it refuses the state for (it then reports
	// the generation before the state's applied).
	version, upgrade map[string]string
}

// setVersion makes node id report dynia-pull version v, and upgrade
// required to need (none: "").
func (h *nodeHealth) setVersion(id, v, need string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version[id], h.upgrade[id] = v, need
}

// silence stops reportNodes writing node id's report.
func (h *nodeHealth) silence(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.silent[id] = true
}

func (h *nodeHealth) set(id string, down, stale bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[id], h.stale[id] = down, stale
}

// reportNodes writes every node's status report every 50 ms, as dynia-pull
// would, with the generation applied and the health h says, until stopped.
func (e *testEnv) reportNodes(name string) (*nodeHealth, func()) {
	h := &nodeHealth{down: map[string]bool{}, stale: map[string]bool{}, silent: map[string]bool{},
		version: map[string]string{}, upgrade: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		store := cluster.NewStore(e.bucket) // reads only: the test's nodes trust the state
		for ctx.Err() == nil {
			if st, _, err := store.Load(ctx, name); err == nil {
				for _, n := range st.Nodes {
					s := report.Status{NodeID: n.ID, Cluster: name, AppliedGeneration: st.Generation,
						VRRPState: report.VRRPBackup, AppHealthy: true, UpdatedAt: time.Now().UTC()}
					if n.Role == cluster.RoleActive {
						s.VRRPState = report.VRRPMaster
					}
					h.mu.Lock()
					if h.silent[n.ID] {
						h.mu.Unlock()
						continue
					}
					if h.down[n.ID] {
						s.VRRPState, s.AppHealthy = report.VRRPFault, false
					}
					if h.stale[n.ID] {
						s.UpdatedAt = time.Now().Add(-time.Hour).UTC()
					}
					s.Version, s.Image = h.version[n.ID], st.Image
					if need := h.upgrade[n.ID]; need != "" {
						s.UpgradeRequired, s.AppliedGeneration = need, st.Generation-1
						s.StateError = "upgrade_required: upgrade required: the state needs dynia-pull " + need + " or newer"
					}
					// Signed with the node's key from its user-data, as
					// dynia-pull on the droplet signs it. Written under
					// h.mu: once silence returns, no report of that node
					// is still on its way to overwrite the test's own.
					b, _ := report.SignReport(s, e.reportKey(n))
					_, _ = e.bucket.Put(ctx, cluster.StatusKey(name, n.ID), b, bucket.Cond{})
					h.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return h, func() { cancel(); wg.Wait() }
}

// consistent checks state, simulator, RIP and `node list` agree.
func (e *testEnv) consistent(name string) *cluster.State {
	e.t.Helper()
	st := e.state(name)
	drops := map[int]dosim.Droplet{}
	for _, d := range e.sim.Droplets() {
		drops[d.ID] = d
	}
	tagged := 0
	for _, d := range drops {
		for _, tg := range d.Tags {
			if tg == cloud.ClusterTag(name) {
				tagged++
			}
		}
	}
	if tagged != len(st.Nodes) {
		e.t.Fatalf("%d droplets tagged for %s, state has %d nodes", tagged, name, len(st.Nodes))
	}
	for _, n := range st.Nodes {
		if _, ok := drops[n.DropletID]; !ok {
			e.t.Fatalf("node %s: droplet %d not in the simulator", n.ID, n.DropletID)
		}
	}
	if st.ReservedIP != "" {
		var holder int
		for _, r := range e.sim.ReservedIPs() {
			if r.IP == st.ReservedIP {
				holder = r.DropletID
			}
		}
		if a := st.Active(); a == nil || a.DropletID != holder {
			e.t.Fatalf("Reserved IP %s on droplet %d, state's active node %+v", st.ReservedIP, holder, a)
		}
	}
	r := e.mustRun("node", "list", "--name", name, "-o", "json")
	var rows []NodeRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("node list -o json: %v\n%s", err, r.stdout)
	}
	if len(rows) != len(st.Nodes) {
		e.t.Fatalf("node list shows %d nodes, state has %d: %+v", len(rows), len(st.Nodes), rows)
	}
	for _, row := range rows {
		n := st.Node(row.ID)
		if n == nil {
			e.t.Fatalf("node list shows %s, not in the state", row.ID)
		}
		if row.Role != string(n.Role) || row.DropletID != n.DropletID || row.Priority != n.Priority ||
			row.Lifecycle != string(n.Lifecycle) || row.PrivateIP != n.PrivateIP || row.PublicIP != n.PublicIP {
			e.t.Fatalf("node list row %+v disagrees with the state's node %+v", row, *n)
		}
	}
	return st
}

func (e *testEnv) String() string {
	if e.s3 != nil {
		return fmt.Sprintf("env(%s, %s)", e.api.URL, e.s3.Endpoint)
	}
	return fmt.Sprintf("env(%s)", e.api.URL)
}

type cloudDropletSpec = cloud.DropletSpec

// NewFactoryForTest builds a Factory wired to the environment.
func NewFactoryForTest(e *testEnv) *Factory {
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Getenv = func(k string) string { return e.env[k] }
	f.Global.ConfigPath = e.cfg
	return f
}

// runTTY runs dynia as run does, with stdin reading in and, when tty,
// stdin and stderr taken for terminals (the prompts of destructive
// commands).
func (e *testEnv) runTTY(in string, tty bool, args ...string) result {
	e.t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(in), Out: &out, ErrOut: &errOut, InTTY: tty, ErrTTY: tty})
	f.Getenv = func(k string) string { return e.env[k] }
	f.CloudOptions = cloud.Options{RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, PollMax: 50 * time.Millisecond, RequestTimeout: e.requestTimeout}
	f.BucketHTTPClient = &http.Client{Transport: writeCounter{next: http.DefaultTransport, n: &e.writes, all: &e.requests,
		onWrite: e.onBucketWrite}}
	f.StoreOverride = e.store
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := Run(ctx, f, append([]string{"--config", e.cfg}, args...))
	return result{code, out.String(), errOut.String()}
}
