package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/extcmd"
)

// PersistentKeepalive makes every pair of nodes exchange a packet at least
// this often (wg(8) suggests 25 s). VRRP alone only flows from the MASTER,
// so without it two BACKUPs would never handshake, and a broken link
// between them would show only at the next failover; with it the latest
// handshake of every peer in the status report is a health signal.
const PersistentKeepalive = 25 * time.Second

// ErrNoInterface is returned by Apply when a userspace interface does not
// exist: wireguard-go, which creates it, is not running (yet).
var ErrNoInterface = errors.New("interface does not exist")

// Peer is one peer as it should be configured.
type Peer struct {
	PublicKey wgtypes.Key
	Address   netip.Addr     // its mesh address: AllowedIPs = Address/32
	Endpoint  netip.AddrPort // its VPC private IP and WireGuard port
}

// Config is what the interface should be.
type Config struct {
	PrivateKey wgtypes.Key
	ListenPort int
	// Address is this node's mesh address, assigned as Address/16 (Prefix),
	// so the whole prefix routes into the interface and WireGuard picks the
	// peer by AllowedIPs. Not valid: unknown yet, addresses left alone.
	Address netip.Addr
	Peers   []Peer
	// KeepPeers leaves the configured peers as they are (Peers is ignored):
	// for bringing the interface up before a new state is known to be good.
	KeepPeers bool
}

// Changes says what Apply changed.
type Changes struct {
	Created   bool // the kernel interface was created
	Addressed bool // the mesh address was assigned
	LinkUp    bool // the link was set up
	Keyed     bool // the private key or listen port was set
	Added     int  // peers added
	Updated   int  // peers whose endpoint, AllowedIPs or keepalive were set again
	Removed   int  // peers removed
}

// Any says whether anything changed.
func (c Changes) Any() bool {
	return c.Created || c.Addressed || c.LinkUp || c.Keyed || c.Added+c.Updated+c.Removed > 0
}

// Relinked says the interface was made, addressed or brought up again. A
// keepalived that started (or kept running) while it lacked its address
// stays FAULT ("src address not configured") until it reloads.
func (c Changes) Relinked() bool { return c.Created || c.Addressed || c.LinkUp }

// Device is one WireGuard interface in the current network namespace,
// configured through wgctrl (golang.zx2c4.com/wireguard/wgctrl): generic
// netlink for kernel WireGuard, the UAPI socket
// /var/run/wireguard/<name>.sock for wireguard-go. The private key goes
// over netlink or that 0700 socket, never through argv or a log. Links and
// addresses are set with ip(8). Methods are safe for concurrent use.
type Device struct {
	Name string
	// Userspace: wireguard-go creates and owns the interface (dynia-pull
	// supervises it); Apply waits for it, never creates it. Otherwise Apply
	// creates a kernel interface: `ip link add NAME type wireguard`.
	Userspace bool
	// IP is the ip(8) program (default "ip").
	IP string
	// Wait bounds how long Apply waits for a userspace interface that does
	// not exist yet (default 3 s: wireguard-go makes it in milliseconds).
	Wait time.Duration

	mu sync.Mutex
	wg *wgctrl.Client
}

// Apply makes the interface match c and changes only what differs, the
// way `wg syncconf` does: peers are added, updated or removed one by one,
// the interface is never reset, so traffic to unchanged peers flows on.
// Order: interface, key and port, peers, address, link up — the address
// before the link, so a keepalived watching the link sees it up with its
// address. The returned Changes are valid with an error too (what was done
// before it).
func (d *Device) Apply(ctx context.Context, c Config) (Changes, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ch Changes
	ifc, err := d.link(ctx, &ch)
	if err != nil {
		return ch, err
	}
	cur, err := d.device()
	if err != nil {
		return ch, err
	}
	cfg, wch := diff(cur, c)
	if wch.Any() {
		if err := d.wg.ConfigureDevice(d.Name, cfg); err != nil {
			return ch, fmt.Errorf("configure %s: %w", d.Name, err)
		}
		ch.Keyed, ch.Added, ch.Updated, ch.Removed = wch.Keyed, wch.Added, wch.Updated, wch.Removed
	}
	if c.Address.IsValid() {
		if err := d.address(ctx, ifc, c.Address, &ch); err != nil {
			return ch, err
		}
	}
	if ifc.Flags&net.FlagUp == 0 {
		if err := d.ip(ctx, "link", "set", d.Name, "up"); err != nil {
			return ch, err
		}
		ch.LinkUp = true
	}
	return ch, nil
}

// link returns the interface, creating a kernel one or waiting for
// wireguard-go's.
func (d *Device) link(ctx context.Context, ch *Changes) (*net.Interface, error) {
	ifc, err := net.InterfaceByName(d.Name)
	if err == nil {
		return ifc, nil
	}
	if !d.Userspace {
		if err := d.ip(ctx, "link", "add", d.Name, "type", "wireguard"); err != nil {
			return nil, err
		}
		ch.Created = true
		// wgctrl looks the wireguard netlink family up once, when its
		// client is made; the module may have been loaded only now.
		d.closeClient()
		if ifc, err = net.InterfaceByName(d.Name); err != nil {
			return nil, fmt.Errorf("interface %s: created but not found: %w", d.Name, err)
		}
		return ifc, nil
	}
	wait := d.Wait
	if wait == 0 {
		wait = 3 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		if ifc, err := net.InterfaceByName(d.Name); err == nil {
			return ifc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("interface %s: %w (wireguard-go not running?)", d.Name, ErrNoInterface)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// device reads the interface's WireGuard configuration, making the wgctrl
// client on first use and once more if the interface is not found through
// it (a client made before the kernel module was loaded cannot see it).
func (d *Device) device() (*wgtypes.Device, error) {
	for attempt := 0; ; attempt++ {
		if d.wg == nil {
			c, err := wgctrl.New()
			if err != nil {
				return nil, fmt.Errorf("wgctrl: %w", err)
			}
			d.wg = c
		}
		dev, err := d.wg.Device(d.Name)
		if err == nil {
			return dev, nil
		}
		if errors.Is(err, os.ErrNotExist) && attempt == 0 {
			d.closeClient()
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("interface %s is not a WireGuard interface (or its UAPI socket is gone)", d.Name)
		}
		return nil, fmt.Errorf("read %s: %w", d.Name, err)
	}
}

func (d *Device) closeClient() {
	if d.wg != nil {
		_ = d.wg.Close() // dropping the client; nothing to do about its close error
		d.wg = nil
	}
}

// address assigns want/16 unless the interface already holds exactly
// that, and removes any other address of Prefix from it.
func (d *Device) address(ctx context.Context, ifc *net.Interface, want netip.Addr, ch *Changes) error {
	addrs, err := ifc.Addrs()
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", d.Name, err)
	}
	have := false
	var stale []string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := n.Mask.Size()
		switch {
		case ip == want && ones == Prefix.Bits():
			have = true
		case Prefix.Contains(ip):
			stale = append(stale, netip.PrefixFrom(ip, ones).String())
		}
	}
	for _, s := range stale {
		if err := d.ip(ctx, "-4", "addr", "del", s, "dev", d.Name); err != nil {
			return err
		}
	}
	if !have {
		if err := d.ip(ctx, "-4", "addr", "replace", netip.PrefixFrom(want, Prefix.Bits()).String(), "dev", d.Name); err != nil {
			return err
		}
		ch.Addressed = true
	}
	return nil
}

func (d *Device) ip(ctx context.Context, args ...string) error {
	bin := d.IP
	if bin == "" {
		bin = "ip"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := extcmd.Combined(exec.CommandContext(ctx, bin, args...))
	return err
}

// Peers returns the interface's peers as WireGuard reports them (latest
// handshake, endpoint, transfer).
func (d *Device) Peers() ([]wgtypes.Peer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := net.InterfaceByName(d.Name); err != nil {
		return nil, fmt.Errorf("interface %s: %w", d.Name, ErrNoInterface)
	}
	dev, err := d.device()
	if err != nil {
		return nil, err
	}
	return dev.Peers, nil
}

// Ready says whether the interface exists, is up and holds a mesh address:
// what keepalived needs to start on it.
func (d *Device) Ready() bool {
	ifc, err := net.InterfaceByName(d.Name)
	if err != nil || ifc.Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && Prefix.Contains(ip.Unmap()) {
				return true
			}
		}
	}
	return false
}

// Close releases the wgctrl client; the interface stays as it is.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeClient()
	return nil
}

// diff returns the wgtypes.Config turning cur into c (ReplacePeers false:
// only the listed peers change) and what it changes.
func diff(cur *wgtypes.Device, c Config) (wgtypes.Config, Changes) {
	var cfg wgtypes.Config
	var ch Changes
	if cur.PrivateKey != c.PrivateKey {
		k := c.PrivateKey
		cfg.PrivateKey, ch.Keyed = &k, true
	}
	if cur.ListenPort != c.ListenPort {
		p := c.ListenPort
		cfg.ListenPort, ch.Keyed = &p, true
	}
	if c.KeepPeers {
		return cfg, ch
	}
	have := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range cur.Peers {
		have[p.PublicKey] = p
	}
	want := map[wgtypes.Key]bool{}
	keepalive := PersistentKeepalive
	for _, p := range c.Peers {
		want[p.PublicKey] = true
		allowed := net.IPNet{IP: p.Address.AsSlice(), Mask: net.CIDRMask(32, 32)}
		pc := wgtypes.PeerConfig{
			PublicKey:                   p.PublicKey,
			Endpoint:                    net.UDPAddrFromAddrPort(p.Endpoint),
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  []net.IPNet{allowed},
			PersistentKeepaliveInterval: &keepalive,
		}
		h, ok := have[p.PublicKey]
		switch {
		case !ok:
			ch.Added++
		case !samePeer(h, p):
			ch.Updated++
		default:
			continue
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	// Removals in a stable order (the map's is random).
	var gone []wgtypes.Key
	for k := range have {
		if !want[k] {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b wgtypes.Key) int { return bytes.Compare(a[:], b[:]) })
	for _, k := range gone {
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
		ch.Removed++
	}
	return cfg, ch
}

// samePeer says whether a configured peer already matches p.
func samePeer(h wgtypes.Peer, p Peer) bool {
	if h.Endpoint == nil || h.PersistentKeepaliveInterval != PersistentKeepalive || len(h.AllowedIPs) != 1 {
		return false
	}
	ep := h.Endpoint.AddrPort()
	if netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port()) != p.Endpoint {
		return false
	}
	a := h.AllowedIPs[0]
	ones, bits := a.Mask.Size()
	ip, ok := netip.AddrFromSlice(a.IP)
	return ok && ip.Unmap() == p.Address && ones == 32 && bits == 32
}
