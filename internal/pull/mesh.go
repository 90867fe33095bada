package pull

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/mesh"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// The mesh step (docs/pull.md, Mesh). keepalived's VRRP runs over one
// WireGuard interface per node (internal/mesh). This file brings it up,
// learns the peers' public keys from their status reports, and keeps the
// peers in line with the applied state:
//
//   - Prepare loads (or at first start creates) the private key and, with
//     wireguard_go_bin in supervise mode, adopts or starts wireguard-go.
//     keepalived is started only once the interface is up with its address:
//     keepalived exits on a missing interface and stays FAULT without its
//     source address.
//   - Apply brings the interface up (key, port, address) before keepalived -t
//     checks a keepalived.conf naming it; peers are left as they are, since
//     the new state is not known to be good yet.
//   - meshPoll, after every poll, reads the report of each member whose key
//     is unknown (and re-checks one known key a minute), then syncs the peers
//     to the applied state: added, updated or removed one by one.

// keyRecheck is how often a known peer key is read again from its report
// (a node rebuilt under the same id has a new key).
const keyRecheck = time.Minute

// peerKey is what a node learned about a peer from its status report.
type peerKey struct {
	key     wgtypes.Key
	port    int       // the peer's WireGuard port (its report's mesh.port)
	known   bool      // key and port are set
	checked time.Time // last successful read of its report (zero: seeded from the interface)
	// privateIP is the node's private IP when its key was learned: a new
	// one means a new droplet under the same node id (repair), with a new
	// key, so the report is read again at once.
	privateIP string
}

// meshState is a daemon's side of the mesh.
type meshState struct {
	set MeshSettings
	dev *mesh.Device

	mu      sync.Mutex // guards the fields below; the report loop reads them
	key     wgtypes.Key
	haveKey bool
	keys    map[string]*peerKey // by node id, members only
	seeded  bool                // keys taken over from the interface's peers (a restart)
	lastErr string              // the last mesh error reported, so a lasting one is logged once
	// refused is, per peer, why its report was not believed last time, so
	// a lasting forgery is logged once, not at every poll.
	refused map[string]string
}

func newMeshState(set *MeshSettings) *meshState {
	if set == nil {
		return nil
	}
	return &meshState{set: *set, keys: map[string]*peerKey{},
		dev: &mesh.Device{Name: set.Interface, Userspace: set.WireGuardGo != ""}}
}

// wireguardSpec is how supervise mode runs wireguard-go: in the foreground
// (-f; WG_PROCESS_FOREGROUND=1 also drops its banner), its pid recorded by
// the supervisor, adopted by the interface name in its argv (unique per
// node: its UAPI socket lives in the shared /var/run/wireguard).
func (d *Daemon) wireguardSpec(set Settings) daemonSpec {
	m := d.mesh.set
	return daemonSpec{name: "wireguard-go", bin: m.WireGuardGo, config: m.Interface,
		pidFile: filepath.Join(set.RunDir, "wireguard-go.pid"), args: []string{"-f", m.Interface},
		writePid: true, env: []string{"WG_PROCESS_FOREGROUND=1"}}
}

// prepareMesh loads or creates the key and starts (or adopts) wireguard-go.
// A key that cannot be loaded is reported and tried again at every apply:
// the node keeps serving HTTP meanwhile.
func (d *Daemon) prepareMesh(ctx context.Context, set Settings) {
	if d.mesh == nil {
		return
	}
	if _, err := d.meshKey(); err != nil {
		_ = d.meshFailed(0, err) // reported; every apply tries the key again
	}
	if set.Supervise && d.mesh.set.WireGuardGo != "" {
		d.sup.start(ctx, d.wireguardSpec(set))
	}
}

// meshKey returns the private key, loading or creating it on first use. A
// new key is reported at once, so peers can learn it.
func (d *Daemon) meshKey() (wgtypes.Key, error) {
	m := d.mesh
	m.mu.Lock()
	if m.haveKey {
		defer m.mu.Unlock()
		return m.key, nil
	}
	m.mu.Unlock()
	key, created, fixed, err := mesh.LoadOrCreateKey(m.set.KeyFile)
	if err != nil {
		return wgtypes.Key{}, err
	}
	m.mu.Lock()
	m.key, m.haveKey = key, true
	m.mu.Unlock()
	pub := key.PublicKey().String()
	if fixed {
		d.log.Warn("mesh key file was readable by others; made it 0600", "path", m.set.KeyFile)
	}
	if created {
		d.log.Info("mesh key created", "path", m.set.KeyFile, "public_key", pub)
	}
	d.rep.update(func(s *report.Status) {
		s.Mesh = &report.MeshStatus{Interface: m.set.Interface, PublicKey: pub, Port: m.set.Port, Peers: []report.MeshPeerStatus{}}
	})
	if created {
		d.rep.kick()
	}
	return key, nil
}

// meshReady says whether keepalived may start: no mesh, or the interface is
// up with its address.
func (d *Daemon) meshReady() bool { return d.mesh == nil || d.mesh.dev.Ready() }

// keepalivedRunning says whether a keepalived runs for this node.
func (d *Daemon) keepalivedRunning() bool {
	return keepalivedPid(d.sup, d.paths) != 0
}

// syncMesh makes the interface match st: key, port, this node's address
// and, unless keepPeers, one peer per VRRP member whose key is known. A
// re-made or re-addressed interface (a restarted wireguard-go) makes a
// running keepalived reload, so it binds its source address again; in
// supervise mode a keepalived that waited for the mesh is started.
func (d *Daemon) syncMesh(ctx context.Context, st *cluster.State, keepPeers bool) error {
	m := d.mesh
	key, err := d.meshKey()
	if err != nil {
		return err
	}
	var addr netip.Addr
	if self := st.Node(d.nodeID); self != nil && self.PrivateIP != "" {
		if addr, err = mesh.Address(self.PrivateIP); err != nil {
			return err
		}
	}
	m.mu.Lock()
	seeded := m.seeded
	m.mu.Unlock()
	// Until the interface's own peers were taken over, the learned keys may
	// miss some of them: never remove a working peer for that.
	keepPeers = keepPeers || !seeded
	cfg := mesh.Config{PrivateKey: key, ListenPort: m.set.Port, Address: addr, KeepPeers: keepPeers}
	if !keepPeers {
		cfg.Peers = meshPeers(st, d.nodeID, m.knownKeys(), key.PublicKey())
	}
	ch, err := m.dev.Apply(ctx, cfg)
	if ch.Any() {
		d.log.Info("mesh changed", "interface", m.set.Interface, "created", ch.Created, "addressed", ch.Addressed,
			"link_up", ch.LinkUp, "keyed", ch.Keyed, "peers_added", ch.Added, "peers_updated", ch.Updated,
			"peers_removed", ch.Removed, "peers", len(cfg.Peers))
	}
	if ch.Relinked() && d.keepalivedRunning() {
		d.ap.markReload(false, true)
	}
	if err != nil {
		return err
	}
	if addr.IsValid() {
		d.rep.update(func(s *report.Status) {
			if s.Mesh != nil && s.Mesh.Address != addr.String() {
				c := *s.Mesh
				c.Address = addr.String()
				s.Mesh = &c
			}
		})
	}
	set, _ := d.current()
	if set.Supervise && !d.sup.supervising("keepalived") {
		d.superviseStart(ctx) // keepalived waited for the mesh
	}
	return nil
}

// meshFailed records a mesh failure as an apply failure (reason mesh) and
// remembers it, so meshPoll reports a lasting one once.
func (d *Daemon) meshFailed(gen int64, err error) error {
	d.mesh.mu.Lock()
	d.mesh.lastErr = err.Error()
	d.mesh.mu.Unlock()
	return d.fail(gen, &ApplyError{"mesh", err})
}

// meshPoll runs after every poll with the applied state: it learns keys
// from the peers' reports, syncs the peers, repairs the interface (a
// restarted wireguard-go comes up empty) and reloads keepalived when the
// interface was re-made under it.
func (d *Daemon) meshPoll(ctx context.Context) {
	if d.mesh == nil {
		return
	}
	d.amu.Lock()
	st := d.applied
	d.amu.Unlock()
	if st == nil {
		return
	}
	d.seedKeys(st)
	d.learnKeys(ctx, st) // bucket reads: outside applyMu, so an apply never waits on them
	err := d.syncPeers(ctx)
	m := d.mesh
	m.mu.Lock()
	last := m.lastErr
	if err == nil {
		m.lastErr = ""
	}
	m.mu.Unlock()
	switch {
	case err == nil && last != "":
		d.rep.clearError("mesh")
	case err != nil && err.Error() != last:
		_ = d.meshFailed(st.Generation, err) // recorded in the status; the loop goes on
	}
}

// syncPeers is meshPoll's interface step, serialized with Apply by
// applyMu: Apply also configures the interface (syncMesh) and reloads, and
// run side by side the two could start a daemon twice or clear a pending
// reload the other had just marked. It syncs the peers to the applied
// state as it is under the lock (an apply may have replaced it since
// meshPoll read it) and reloads keepalived when the interface was re-made
// under it. Nothing that holds applyMu waits on meshPoll (it runs on the
// poll loop's goroutine, after Step returned), so this cannot deadlock.
func (d *Daemon) syncPeers(ctx context.Context) error {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	st := d.appliedState()
	if st == nil {
		return nil
	}
	if err := d.syncMesh(ctx, st, false); err != nil {
		return err
	}
	did, rerr := d.ap.reloadPendingKeepalived(ctx, d.log)
	if rerr != nil {
		return rerr
	}
	if did {
		d.log.Info("keepalived reloaded: the mesh interface was re-made under it")
	}
	return nil
}

// vrrpPeers are st's VRRP members other than self: the nodes the mesh
// connects this one to.
func vrrpPeers(st *cluster.State, self string) []render.Peer {
	var out []render.Peer
	for _, p := range render.VRRPMembers(st) {
		if p.ID != self {
			out = append(out, p)
		}
	}
	return out
}

// meshPeers is the peer set for st: every VRRP member but self (the
// members keepalived.conf names) whose key is known, at its mesh address,
// with its private IP and WireGuard port as endpoint, sorted by node id. A
// member whose key is unknown yet, whose address cannot be derived, or
// that claims this node's own public key is left out.
func meshPeers(st *cluster.State, self string, keys map[string]peerKey, own wgtypes.Key) []mesh.Peer {
	var out []mesh.Peer
	for _, p := range vrrpPeers(st, self) {
		k, ok := keys[p.ID]
		if !ok || !k.known || k.key == own {
			continue
		}
		addr, err := mesh.Address(p.Addr)
		if err != nil {
			continue
		}
		priv, err := netip.ParseAddr(p.Addr)
		if err != nil {
			continue
		}
		port := k.port
		if port == 0 {
			port = nodeconfig.DefaultMeshPort
		}
		out = append(out, mesh.Peer{PublicKey: k.key, Address: addr, Endpoint: netip.AddrPortFrom(priv, uint16(port))})
	}
	return out
}

// knownKeys copies the learned keys.
func (m *meshState) knownKeys() map[string]peerKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]peerKey, len(m.keys))
	for id, k := range m.keys {
		out[id] = *k
	}
	return out
}

// seedKeys takes the interface's peers over once, after a restart of
// dynia-pull: a member whose mesh address a configured peer routes keeps
// that peer (re-checked from its report at the recheck pace), so a
// dynia-pull restart never removes a working peer while it re-reads the
// reports. A failed read is tried again at the next poll.
func (d *Daemon) seedKeys(st *cluster.State) {
	m := d.mesh
	m.mu.Lock()
	seeded := m.seeded
	m.mu.Unlock()
	if seeded {
		return
	}
	peers, err := m.dev.Peers()
	if err != nil {
		if !errors.Is(err, mesh.ErrNoInterface) {
			return
		}
		peers = nil // a new interface has no peers to keep
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seeded = true
	for _, p := range vrrpPeers(st, d.nodeID) {
		addr, err := mesh.Address(p.Addr)
		if err != nil {
			continue
		}
		for _, wp := range peers {
			if len(wp.AllowedIPs) != 1 || wp.Endpoint == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(wp.AllowedIPs[0].IP)
			if !ok || ip.Unmap() != addr {
				continue
			}
			if k := m.keys[p.ID]; k == nil || !k.known {
				m.keys[p.ID] = &peerKey{key: wp.PublicKey, port: wp.Endpoint.Port, known: true, privateIP: p.Addr}
			}
		}
	}
}

// learnKeys reads the status report of every member whose key is unknown
// or whose private IP changed since (one GET each per poll, so a node
// joining or rebuilt is learned within a poll of its first report) and of
// at most one known member whose key was last read keyRecheck ago. A read that fails or finds no key changes nothing:
// a known key is only ever replaced by another key read from the report,
// never dropped while its node is a member.
func (d *Daemon) learnKeys(ctx context.Context, st *cluster.State) {
	m := d.mesh
	members := vrrpPeers(st, d.nodeID)
	var unknown []string
	var recheck string
	var oldest time.Time
	m.mu.Lock()
	ids := map[string]string{} // member id → private IP
	for _, p := range members {
		ids[p.ID] = p.Addr
		k := m.keys[p.ID]
		switch {
		case k == nil || !k.known || k.privateIP != p.Addr:
			unknown = append(unknown, p.ID)
		case time.Since(k.checked) >= keyRecheck && (recheck == "" || k.checked.Before(oldest)):
			recheck, oldest = p.ID, k.checked
		}
	}
	for id := range m.keys {
		if _, ok := ids[id]; !ok {
			delete(m.keys, id) // left the cluster: re-learned if it comes back
		}
	}
	m.mu.Unlock()
	if recheck != "" {
		unknown = append(unknown, recheck)
	}
	_, store := d.current()
	for _, id := range unknown {
		key, port, ok := d.readPeerKey(ctx, store, st, id)
		if !ok {
			continue
		}
		m.mu.Lock()
		k := m.keys[id]
		if k == nil {
			k = &peerKey{}
			m.keys[id] = k
		}
		if !k.known || k.key != key || k.port != port {
			d.log.Info("mesh peer key learned", "peer", id, "public_key", key.String(), "port", port, "replaces", k.known)
		}
		k.key, k.port, k.known, k.checked, k.privateIP = key, port, true, time.Now(), ids[id]
		m.mu.Unlock()
	}
}

// readPeerKey GETs a node's status report and returns its mesh key and
// port; ok is false when there is none yet (no report, an old dynia-pull,
// mesh disabled there), the read failed, or the report is not believed
// (not signed with the report key st records for that node: report.ReadReport).
// A key is only ever taken from a report that verifies.
func (d *Daemon) readPeerKey(ctx context.Context, store bucket.Store, st *cluster.State, id string) (wgtypes.Key, int, bool) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := report.ReadReport(gctx, store, st, id)
	var re *report.ReportError
	if errors.As(err, &re) {
		m := d.mesh
		m.mu.Lock()
		if m.refused == nil {
			m.refused = map[string]string{}
		}
		first := m.refused[id] != re.Reason
		m.refused[id] = re.Reason
		m.mu.Unlock()
		if first {
			d.log.Warn("peer report not believed; its mesh key is not taken", "peer", id, "err", re)
		}
		return wgtypes.Key{}, 0, false
	}
	if err != nil {
		d.log.Debug("read peer status for its mesh key", "peer", id, "err", err)
		return wgtypes.Key{}, 0, false
	}
	if s == nil || s.Mesh == nil || s.Mesh.PublicKey == "" {
		return wgtypes.Key{}, 0, false
	}
	d.mesh.mu.Lock()
	delete(d.mesh.refused, id)
	d.mesh.mu.Unlock()
	key, err := wgtypes.ParseKey(s.Mesh.PublicKey)
	if err != nil || s.Mesh.Port < 0 || s.Mesh.Port > 65535 {
		d.log.Warn("peer status has a bad mesh key or port; ignored", "peer", id, "port", s.Mesh.Port)
		return wgtypes.Key{}, 0, false
	}
	return key, s.Mesh.Port, true
}

// refreshMesh puts the peers' latest handshakes into the status report.
func (d *Daemon) refreshMesh() {
	if d.mesh == nil {
		return
	}
	m := d.mesh
	peers, err := m.dev.Peers()
	if err != nil {
		return // reported by the mesh step; the last view stays
	}
	byKey := map[wgtypes.Key]string{}
	for id, k := range m.knownKeys() {
		if k.known {
			byKey[k.key] = id
		}
	}
	now := time.Now()
	out := make([]report.MeshPeerStatus, 0, len(peers))
	for _, p := range peers {
		ps := report.MeshPeerStatus{NodeID: byKey[p.PublicKey], PublicKey: p.PublicKey.String()}
		if p.Endpoint != nil {
			ps.Endpoint = p.Endpoint.String()
		}
		if !p.LastHandshakeTime.IsZero() {
			age := int64(now.Sub(p.LastHandshakeTime).Seconds())
			ps.LatestHandshakeAgeSeconds = &age
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	d.rep.update(func(s *report.Status) {
		if s.Mesh != nil {
			c := *s.Mesh
			c.Peers = out
			s.Mesh = &c
		}
	})
}

// closeMesh releases the wgctrl client; the interface and wireguard-go
// stay, like haproxy and keepalived, for the next dynia-pull.
func (d *Daemon) closeMesh() {
	if d.mesh != nil {
		_ = d.mesh.dev.Close() // closes a client only; nothing to report
	}
}
