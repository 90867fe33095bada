package pull

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/mesh"
	"github.com/dynia/dynia/internal/report"
)

func genKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMeshPeers(t *testing.T) {
	t.Parallel()
	own := genKey(t).PublicKey()
	s := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "img", time.Unix(0, 0))
	add := func(id, ip string, lc cluster.Lifecycle) {
		s.Nodes = append(s.Nodes, cluster.Node{ID: id, PrivateIP: ip, Priority: 100, Role: cluster.RoleStandby, Lifecycle: lc})
	}
	add("amber-fox", "10.9.0.1", cluster.Ready) // self
	add("dusty-lynx", "10.9.1.4", cluster.Ready)
	add("brisk-owl", "10.9.0.2", cluster.Provisioning) // provisioning: a VRRP member, so a peer
	add("calm-heron", "10.9.0.3", cluster.Removing)    // removing: not a member
	add("eager-mole", "10.9.0.5", cluster.Ready)       // key not known yet
	add("fuzzy-newt", "10.9.0.6", cluster.Ready)       // claims this node's key
	add("gentle-orca", "", cluster.Provisioning)       // no private IP yet
	kb, kc, kd := genKey(t).PublicKey(), genKey(t).PublicKey(), genKey(t).PublicKey()
	keys := map[string]peerKey{
		"amber-fox":   {key: own, port: 51820, known: true},
		"brisk-owl":   {key: kb, port: 0, known: true}, // a report without a port: the default
		"calm-heron":  {key: kc, port: 51820, known: true},
		"dusty-lynx":  {key: kd, port: 51999, known: true},
		"eager-mole":  {},
		"fuzzy-newt":  {key: own, port: 51820, known: true},
		"gentle-orca": {key: genKey(t).PublicKey(), known: true},
	}
	got := meshPeers(s, "amber-fox", keys, own)
	want := []mesh.Peer{
		{PublicKey: kb, Address: netip.MustParseAddr("100.64.0.2"), Endpoint: netip.MustParseAddrPort("10.9.0.2:51820")},
		{PublicKey: kd, Address: netip.MustParseAddr("100.64.1.4"), Endpoint: netip.MustParseAddrPort("10.9.1.4:51999")},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("meshPeers (-want +got):\n%s", diff)
	}
}

// countingStore counts GETs per key.
type countingStore struct {
	*memStore
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingStore) Get(ctx context.Context, key, etag string) (*bucket.Object, error) {
	c.mu.Lock()
	c.gets[key]++
	c.mu.Unlock()
	return c.memStore.Get(ctx, key, etag)
}

func (c *countingStore) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[key]
}

func putReport(t *testing.T, m *memStore, id string, ms *report.MeshStatus) {
	t.Helper()
	b, err := json.Marshal(report.Status{NodeID: id, Cluster: "shop", VRRPState: report.VRRPUnknown, Mesh: ms, UpdatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	m.Put(context.Background(), cluster.StatusKey("shop", id), b, bucket.Cond{})
}

// TestLearnKeys: keys come from the peers' status reports: every unknown
// member's report is read at each poll until it has a key (so a joining
// node is learned within a poll of its report), known keys are re-read one
// per poll once a minute old, a changed key replaces the old one, a failed
// or keyless read never drops a known key, and a node leaving is forgotten.
func TestLearnKeys(t *testing.T) {
	t.Parallel()
	store := &countingStore{memStore: newMemStore(), gets: map[string]int{}}
	set := Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(),
		Mesh: &MeshSettings{Interface: "unused0", Port: 51820, KeyFile: filepath.Join(t.TempDir(), "k")}}
	d := New(set, store, Options{})
	st := testState(1, 3) // amber-fox (self), brisk-owl, calm-heron
	ctx := context.Background()
	kb, kc := genKey(t).PublicKey(), genKey(t).PublicKey()
	bKey, cKey := cluster.StatusKey("shop", "brisk-owl"), cluster.StatusKey("shop", "calm-heron")
	known := func() map[string]peerKey { return d.mesh.knownKeys() }

	// brisk-owl has reported its key; calm-heron has no report yet.
	putReport(t, store.memStore, "brisk-owl", &report.MeshStatus{PublicKey: kb.String(), Port: 51821})
	d.learnKeys(ctx, st)
	if k := known()["brisk-owl"]; !k.known || k.key != kb || k.port != 51821 {
		t.Fatalf("brisk-owl after one poll: %+v", k)
	}
	if known()["calm-heron"].known {
		t.Fatal("calm-heron known without a report")
	}
	// Next poll: only the unknown one is read; then it reports (first
	// without a key: an old dynia-pull), then with one.
	d.learnKeys(ctx, st)
	if store.count(bKey) != 1 || store.count(cKey) != 2 {
		t.Errorf("GETs brisk-owl %d (want 1), calm-heron %d (want 2)", store.count(bKey), store.count(cKey))
	}
	putReport(t, store.memStore, "calm-heron", nil)
	d.learnKeys(ctx, st)
	if known()["calm-heron"].known {
		t.Fatal("calm-heron known from a report without mesh")
	}
	putReport(t, store.memStore, "calm-heron", &report.MeshStatus{PublicKey: kc.String(), Port: 51820})
	d.learnKeys(ctx, st)
	if k := known()["calm-heron"]; !k.known || k.key != kc {
		t.Fatalf("calm-heron within a poll of its report: %+v", k)
	}
	// All known and fresh: a poll reads nothing.
	before := store.count(bKey) + store.count(cKey)
	d.learnKeys(ctx, st)
	if n := store.count(bKey) + store.count(cKey) - before; n != 0 {
		t.Errorf("%d GETs with every key fresh", n)
	}

	// A minute on: one re-read per poll, the oldest first; a rebuilt
	// brisk-owl's new key replaces the old one.
	d.mesh.mu.Lock()
	d.mesh.keys["brisk-owl"].checked = time.Now().Add(-2 * keyRecheck)
	d.mesh.keys["calm-heron"].checked = time.Now().Add(-keyRecheck - time.Second)
	d.mesh.mu.Unlock()
	kb2 := genKey(t).PublicKey()
	putReport(t, store.memStore, "brisk-owl", &report.MeshStatus{PublicKey: kb2.String(), Port: 51821})
	bBefore, cBefore := store.count(bKey), store.count(cKey)
	d.learnKeys(ctx, st)
	if store.count(bKey) != bBefore+1 || store.count(cKey) != cBefore {
		t.Errorf("re-check: GETs brisk-owl +%d calm-heron +%d, want +1 and +0", store.count(bKey)-bBefore, store.count(cKey)-cBefore)
	}
	if known()["brisk-owl"].key != kb2 {
		t.Error("a changed key was not learned on re-check")
	}
	// A failing store or a keyless report never drops a known key.
	putReport(t, store.memStore, "calm-heron", nil)
	store.memStore.mu.Lock()
	store.err = bucket.ErrNotFound
	store.memStore.mu.Unlock()
	d.learnKeys(ctx, st)
	store.memStore.mu.Lock()
	store.err = nil
	store.memStore.mu.Unlock()
	d.learnKeys(ctx, st)
	if k := known()["calm-heron"]; !k.known || k.key != kc {
		t.Errorf("calm-heron after failed and keyless re-reads: %+v", k)
	}

	// A new droplet under the same id (a new private IP) is read again at
	// the next poll, though its key is not due for a re-check.
	kb3 := genKey(t).PublicKey()
	putReport(t, store.memStore, "brisk-owl", &report.MeshStatus{PublicKey: kb3.String(), Port: 51820})
	st.Node("brisk-owl").PrivateIP = "10.9.0.22"
	d.learnKeys(ctx, st)
	if k := known()["brisk-owl"]; k.key != kb3 || k.privateIP != "10.9.0.22" {
		t.Errorf("rebuilt brisk-owl: %+v", k)
	}

	// calm-heron leaves: forgotten (and re-learned should it come back).
	st.Node("calm-heron").Lifecycle = cluster.Removing
	d.learnKeys(ctx, st)
	if _, ok := known()["calm-heron"]; ok {
		t.Error("a removing node's key is still kept")
	}
	if got := meshPeers(st, "amber-fox", known(), genKey(t).PublicKey()); len(got) != 1 || got[0].PublicKey != kb3 {
		t.Errorf("peers after calm-heron left: %+v", got)
	}
}
