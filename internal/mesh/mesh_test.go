package mesh

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestAddress(t *testing.T) {
	t.Parallel()
	cases := []struct {
		private, want, err string
	}{
		{"10.116.3.7", "100.64.3.7", ""},
		{"10.10.0.11", "100.64.0.11", ""},
		{"172.16.255.254", "100.64.255.254", ""},
		{"192.168.1.0", "100.64.1.0", ""}, // a host address in a /16-/23 VPC
		{"10.200.0.1", "100.64.0.1", ""},
		{"10.1.0.0", "", "network or broadcast"},
		{"10.1.255.255", "", "network or broadcast"},
		{"fd00::1", "", "not an IPv4 address"},
		{"", "", "not an IPv4 address"},
		{"10.1.2", "", "not an IPv4 address"},
	}
	for _, c := range cases {
		got, err := Address(c.private)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Address(%q) = %v, %v; want an error with %q", c.private, got, err, c.err)
			}
			continue
		}
		if err != nil || got.String() != c.want || !Prefix.Contains(got) {
			t.Errorf("Address(%q) = %v, %v; want %s", c.private, got, err, c.want)
		}
	}
	// Unique within any VPC of /16 or smaller: the low 16 bits decide.
	a, _ := Address("10.20.1.2")
	b, _ := Address("10.20.2.1")
	if a == b {
		t.Errorf("two private IPs of one /16 share mesh address %v", a)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "var", "lib", "dynia")
	path := filepath.Join(dir, "wireguard.key")
	k1, created, fixed, err := LoadOrCreateKey(path)
	if err != nil || !created || fixed {
		t.Fatalf("first LoadOrCreateKey: created=%v fixed=%v %v", created, fixed, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %v, %v; want 0700", di.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != k1.String()+"\n" {
		t.Errorf("key file is not `wg genkey` format (base64 and a newline)")
	}
	// Clamped as Curve25519 private keys must be (wg genkey does the same).
	if k1[0]&7 != 0 || k1[31]&128 != 0 || k1[31]&64 == 0 {
		t.Errorf("key is not clamped")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("key dir holds %d entries, want only the key (no temp file)", len(entries))
	}

	// A restart reuses it.
	k2, created, fixed, err := LoadOrCreateKey(path)
	if err != nil || created || fixed || k2 != k1 {
		t.Fatalf("second LoadOrCreateKey: same=%v created=%v fixed=%v %v", k2 == k1, created, fixed, err)
	}
	// A key made readable by others is tightened, not refused.
	os.Chmod(path, 0o644)
	k3, _, fixed, err := LoadOrCreateKey(path)
	if err != nil || !fixed || k3 != k1 {
		t.Fatalf("world-readable key: fixed=%v %v", fixed, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after fix %v", fi.Mode().Perm())
	}
	// A corrupt file is an error that names the path and not the content.
	os.WriteFile(path, []byte("not-a-key\n"), 0o600)
	if _, _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "not-a-key") {
		t.Errorf("corrupt key: %v", err)
	}
}

func mustKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDiff(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	pa, pb, pc := mustKey(t).PublicKey(), mustKey(t).PublicKey(), mustKey(t).PublicKey()
	peer := func(k wgtypes.Key, last byte) Peer {
		return Peer{PublicKey: k, Address: netip.AddrFrom4([4]byte{100, 64, 0, last}),
			Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, last}), 51820)}
	}
	configured := func(p Peer) wgtypes.Peer {
		return wgtypes.Peer{PublicKey: p.PublicKey, Endpoint: net.UDPAddrFromAddrPort(p.Endpoint),
			PersistentKeepaliveInterval: PersistentKeepalive,
			AllowedIPs:                  []net.IPNet{{IP: p.Address.AsSlice(), Mask: net.CIDRMask(32, 32)}}}
	}
	a, b, c := peer(pa, 1), peer(pb, 2), peer(pc, 3)
	want := Config{PrivateKey: priv, ListenPort: 51820, Peers: []Peer{a, b}}

	// A fresh interface: key, port and both peers.
	cfg, ch := diff(&wgtypes.Device{}, want)
	if !ch.Keyed || ch.Added != 2 || ch.Updated+ch.Removed != 0 || cfg.PrivateKey == nil || *cfg.ListenPort != 51820 || cfg.ReplacePeers {
		t.Fatalf("fresh: %+v", ch)
	}
	if got := cfg.Peers[0]; got.Endpoint.String() != "10.0.0.1:51820" || got.AllowedIPs[0].String() != "100.64.0.1/32" ||
		!got.ReplaceAllowedIPs || *got.PersistentKeepaliveInterval != PersistentKeepalive {
		t.Errorf("peer config %+v", got)
	}

	// In sync: nothing to send (the handshake and counters do not matter).
	cur := &wgtypes.Device{PrivateKey: priv, ListenPort: 51820, Peers: []wgtypes.Peer{configured(b), configured(a)}}
	cur.Peers[0].ReceiveBytes = 1234
	if _, ch := diff(cur, want); ch.Any() {
		t.Errorf("in sync: %+v", ch)
	}

	// c joins, b leaves, a moved: one add, one update, one removal, and
	// nothing else touched (wg syncconf semantics, no reset).
	moved := a
	moved.Endpoint = netip.MustParseAddrPort("10.0.0.1:51821")
	cfg, ch = diff(cur, Config{PrivateKey: priv, ListenPort: 51820, Peers: []Peer{moved, c}})
	if diffs := cmp.Diff(Changes{Added: 1, Updated: 1, Removed: 1}, ch); diffs != "" {
		t.Errorf("changes (-want +got):\n%s", diffs)
	}
	if cfg.PrivateKey != nil || cfg.ListenPort != nil || cfg.ReplacePeers || len(cfg.Peers) != 3 {
		t.Fatalf("config %+v", cfg)
	}
	if last := cfg.Peers[2]; last.PublicKey != pb || !last.Remove {
		t.Errorf("last peer config %+v, want b removed", last)
	}
	if ch.Relinked() {
		t.Error("a peer change reported as a relink")
	}
	// KeepPeers touches key and port only.
	cfg, ch = diff(cur, Config{PrivateKey: mustKey(t), ListenPort: 51820, KeepPeers: true})
	if !ch.Keyed || ch.Added+ch.Updated+ch.Removed != 0 || len(cfg.Peers) != 0 {
		t.Errorf("KeepPeers: %+v %+v", ch, cfg.Peers)
	}
}
