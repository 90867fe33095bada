package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// dropletSpec is what the manager needs to know about a new droplet (from
// the simulator's create hook).
type dropletSpec struct {
	ID       int
	Name     string
	Status   string
	VPC      string // VPC id: one bridge per VPC
	Private  netip.Addr
	PrivLen  int
	Gateway  netip.Addr // the VPC's .1, the router's address on the bridge
	Public   netip.Addr // zero without public networking
	UserData []byte
}

// manager runs droplets: it reacts to the simulator's hooks by changing the
// network and the processes. Every method holds mu, so hooks apply in the
// order the simulator fires them.
type manager struct {
	dir   string
	plan  plan
	boot  booter
	log   *slog.Logger
	onChg func() // after every change (rewrites the status file)

	mu         sync.Mutex
	bridges    map[string]string // VPC id → bridge
	nextBridge int
	nextVeth   int
	droplets   map[int]*runningDroplet
	rips       map[string]int // Reserved IP → holder (0 = none)
}

type runningDroplet struct {
	net    dropletNet
	name   string
	status string
	procs  []procSpec    // what boot decided to run; restarted on power_on
	sup    []*supervised // running supervisors
}

// booter turns user-data into the processes a droplet runs.
type booter interface {
	Boot(ctx context.Context, ddir string, d dropletNet, userData []byte) ([]procSpec, error)
}

func newManager(dir string, p plan, b booter, log *slog.Logger, onChange func()) *manager {
	return &manager{dir: dir, plan: p, boot: b, log: log, onChg: onChange,
		bridges: map[string]string{}, droplets: map[int]*runningDroplet{}, rips: map[string]int{}}
}

func (m *manager) changed() {
	if m.onChg != nil {
		m.onChg()
	}
}

// Create builds the droplet's namespace and starts what its user-data asks for.
func (m *manager) Create(ctx context.Context, s dropletSpec) error {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.droplets[s.ID]; ok {
		return nil
	}
	rt := m.plan.RouterNS()
	br, ok := m.bridges[s.VPC]
	if !ok {
		br = m.plan.BridgeName(m.nextBridge)
		m.nextBridge++
		if err := ensureBridge(ctx, rt, br, netip.PrefixFrom(s.Gateway, s.PrivLen)); err != nil {
			return err
		}
		m.bridges[s.VPC] = br
	}
	idx := m.nextVeth
	m.nextVeth++
	d := dropletNet{
		ID: s.ID, NS: m.plan.DropletNS(s.ID), Veth: m.plan.RouterVeth(idx), Bridge: br,
		MAC:     fmt.Sprintf("02:64:%02x:%02x:%02x:%02x", byte(idx>>24), byte(idx>>16), byte(idx>>8), byte(idx)),
		Private: s.Private, PrivLen: s.PrivLen, Public: s.Public, Gateway: s.Gateway,
		RouterIP: m.plan.RouterIP(),
	}
	ddir := dropletDir(m.dir, s.ID)
	// Record before creating, so Down finds the namespace after a crash.
	if err := writeJSON(filepath.Join(ddir, "droplet.json"), d); err != nil {
		return err
	}
	var rips []string
	for ip := range m.rips {
		rips = append(rips, ip)
	}
	sort.Strings(rips)
	if err := addDroplet(ctx, rt, d, rips); err != nil {
		_ = removeDroplet(ctx, rt, d)
		return err
	}
	rd := &runningDroplet{net: d, name: s.Name, status: s.Status}
	m.droplets[s.ID] = rd
	procs, err := m.boot.Boot(ctx, ddir, d, s.UserData)
	if err != nil {
		// A real droplet with broken user-data boots but runs nothing;
		// cloud-init says why in its log, and so does the sandbox's
		// (`dynia sandbox logs ID --component cloud-init`).
		m.log.Error("droplet boot failed", "droplet", s.ID, "err", err)
		line := fmt.Sprintf("%s sandbox cloud-init: user-data not applied, nothing started: %v\n", time.Now().UTC().Format(time.RFC3339), err)
		lerr := os.MkdirAll(filepath.Join(ddir, "logs"), 0o700)
		if lerr == nil {
			lerr = appendFile(filepath.Join(ddir, "logs", "cloud-init.log"), line)
		}
		if lerr != nil {
			m.log.Error("droplet boot failed: write cloud-init.log", "droplet", s.ID, "err", lerr)
		}
		return nil
	}
	for i := range procs {
		procs[i].NetNS = d.NS
	}
	rd.procs = procs
	m.startLocked(rd)
	// A Reserved IP already pointing here (assigned before the namespace
	// existed) gets its route now.
	for ip, holder := range m.rips {
		if holder == s.ID {
			_ = routeReservedIP(ctx, rt, ip, &d)
		}
	}
	return nil
}

func (m *manager) startLocked(rd *runningDroplet) {
	for _, p := range rd.procs {
		rd.sup = append(rd.sup, supervise(p, m.log.With("droplet", rd.net.ID)))
	}
}

// stopLocked stops the droplet's processes: grace 0 is a power cut. The
// error is its Docker engine's cleanup's (powerCutDocker).
func (m *manager) stopLocked(ctx context.Context, rd *runningDroplet, grace time.Duration) error {
	var wg sync.WaitGroup
	for _, s := range rd.sup {
		wg.Add(1)
		go func() { defer wg.Done(); s.Stop(ctx, grace) }()
	}
	wg.Wait()
	rd.sup = nil
	// Anything left in the namespace is ours too: haproxy and keepalived,
	// which outlive dynia-pull (it leaves them running for the next one to
	// adopt), and any other daemon that left its process group: the
	// containerd shims too.
	killNetnsPids(ctx, rd.net.NS)
	// The containers are not in the droplet's namespace (each has its
	// own); a power cut kills them too, and a reboot finds /run empty.
	if err := powerCutDocker(dropletDir(m.dir, rd.net.ID), rd.net.NS); err != nil {
		m.log.Error("droplet power cut", "droplet", rd.net.ID, "err", err)
		return err
	}
	return nil
}

// SetStatus records a status change the network does not care about (new → active).
func (m *manager) SetStatus(id int, status string) {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	if rd, ok := m.droplets[id]; ok {
		rd.status = status
	}
}

// Power cuts or restores the droplet: off = cable out first (silence), then
// its processes killed; on = cable in, processes started from scratch.
func (m *manager) Power(ctx context.Context, id int, on bool) error {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	rd, ok := m.droplets[id]
	if !ok {
		return fmt.Errorf("power droplet %d: not in the sandbox", id)
	}
	rt := m.plan.RouterNS()
	if !on {
		rd.status = "off"
		err := setDropletLink(ctx, rt, rd.net, false)
		return errors.Join(err, m.stopLocked(ctx, rd, 0))
	}
	rd.status = "active"
	if err := setDropletLink(ctx, rt, rd.net, true); err != nil {
		return err
	}
	if len(rd.sup) == 0 {
		m.startLocked(rd)
	}
	return nil
}

// Delete stops the droplet and removes its namespace, veth, routes and
// secrets; its logs stay until Down.
func (m *manager) Delete(ctx context.Context, id int) error {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	rd, ok := m.droplets[id]
	if !ok {
		return nil
	}
	delete(m.droplets, id)
	stopErr := m.stopLocked(ctx, rd, 0)
	err := stopErr
	// DO unassigns a deleted droplet's Reserved IP; the simulator's hook
	// says so too, but never leave a route to a vanished address.
	for ip, holder := range m.rips {
		if holder == id {
			m.rips[ip] = 0
			err = errors.Join(err, routeReservedIP(ctx, m.plan.RouterNS(), ip, nil))
		}
	}
	err = errors.Join(err, removeDroplet(ctx, m.plan.RouterNS(), rd.net))
	ddir := dropletDir(m.dir, id)
	gone := []string{"root", "run", "pids", "pull.json"}
	if stopErr == nil {
		// Never while something may still be mounted under it; with
		// droplet.json kept, Down tries the cleanup again.
		gone = append(gone, "docker", "droplet.json")
	}
	for _, name := range gone {
		if rerr := os.RemoveAll(filepath.Join(ddir, name)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// AssignReservedIP points ip at holder (0 = unassigned: blackholed). The
// first time an IP is seen it is put on every droplet's lo.
func (m *manager) AssignReservedIP(ctx context.Context, ip string, holder int) error {
	defer m.changed()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.assignLocked(ctx, ip, holder)
}

func (m *manager) assignLocked(ctx context.Context, ip string, holder int) error {
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Errorf("reserved IP %q: %w", ip, err)
	}
	var errs []error
	if _, known := m.rips[ip]; !known {
		for _, rd := range m.droplets {
			if err := addReservedIPOnLo(ctx, rd.net.NS, ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	m.rips[ip] = holder
	var target *dropletNet
	if rd, ok := m.droplets[holder]; ok {
		target = &rd.net
	}
	if err := routeReservedIP(ctx, m.plan.RouterNS(), ip, target); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SyncReservedIPs adopts Reserved IPs the hooks did not announce (created
// unassigned), so they are blackholed rather than unroutable.
func (m *manager) SyncReservedIPs(ctx context.Context, all []ReservedIP) {
	m.mu.Lock()
	var missing []ReservedIP
	for _, r := range all {
		if _, ok := m.rips[r.IP]; !ok {
			missing = append(missing, r)
		}
	}
	m.mu.Unlock()
	if len(missing) == 0 {
		return
	}
	for _, r := range missing {
		if err := m.AssignReservedIP(ctx, r.IP, r.DropletID); err != nil {
			m.log.Error("adopt reserved IP", "ip", r.IP, "err", err)
		}
	}
}

// StopAll stops every droplet's processes (serve shutting down); the network
// stays for Down.
func (m *manager) StopAll(ctx context.Context, grace time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var wg sync.WaitGroup
	for _, rd := range m.droplets {
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.stopLocked(ctx, rd, grace) }() // logged; Down retries the cleanup
	}
	wg.Wait()
}

// Snapshot lists the droplets and Reserved IPs for the status file.
func (m *manager) Snapshot() ([]Droplet, []ReservedIP) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := []Droplet{}
	for _, rd := range m.droplets {
		d := Droplet{ID: rd.net.ID, Name: rd.name, Namespace: rd.net.NS, PrivateIP: rd.net.Private.String(), Status: rd.status}
		if rd.net.Public.IsValid() {
			d.PublicIP = rd.net.Public.String()
		}
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID < ds[j].ID })
	rs := []ReservedIP{}
	for ip, h := range m.rips {
		rs = append(rs, ReservedIP{IP: ip, DropletID: h})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].IP < rs[j].IP })
	return ds, rs
}
