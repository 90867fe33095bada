package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/extcmd"
)

// Firewall enforcement modes (Options.Firewalls, `sandbox up --firewalls`).
const (
	// FirewallsEnforce filters every droplet's traffic with the rules of
	// the cloud firewalls targeting it, as DigitalOcean does.
	FirewallsEnforce = "enforce"
	// FirewallsOff stores firewalls in the simulator and enforces nothing.
	FirewallsOff = "off"
	// DefaultFirewalls enforces, as DigitalOcean does: a sandbox kinder
	// than DO proves nothing. dynia's VRRP travels in its WireGuard mesh
	// (UDP), which dynia's firewall allows between the cluster's nodes.
	DefaultFirewalls = FirewallsEnforce
)

// ParseFirewalls checks a --firewalls value ("" means the default).
func ParseFirewalls(s string) (string, error) {
	switch s {
	case "":
		return DefaultFirewalls, nil
	case FirewallsEnforce, FirewallsOff:
		return s, nil
	}
	return "", fmt.Errorf("want %s or %s", FirewallsEnforce, FirewallsOff)
}

// fwSource is where the firewaller reads the cloud's state (the simulator).
type fwSource interface {
	Firewalls() []dosim.Firewall
	Droplets() []dosim.Droplet
}

// firewaller keeps every droplet namespace's nftables tables equal to what
// renderFirewalls says for it. Sync may be called from anywhere, often and
// concurrently (simulator hooks, the serve tick): one caller at a time
// renders and applies; a Sync arriving meanwhile makes that caller go
// round once more, so the last pass always starts after the last change
// (and a pass that read firewalls and droplets either side of a change is
// followed by one that reads both after it).
// Nothing is held while reading the simulator, whose reads may deliver
// hooks that call Sync again on the same goroutine. A nil *firewaller
// (enforcement off) does nothing.
type firewaller struct {
	src    fwSource
	nsName func(id int) string
	log    *slog.Logger
	// apply loads a ruleset into a namespace and exists says whether a
	// namespace is there: applyNft and netnsExists (tests replace them).
	apply  func(ctx context.Context, ns, text string) error
	exists func(ns string) bool

	mu      sync.Mutex
	dirty   bool
	running bool
	// applied is the ruleset text last loaded into each droplet's
	// namespace ("" or missing: no tables). Only the running pass uses it.
	applied map[int]string
}

func newFirewaller(src fwSource, nsName func(id int) string, log *slog.Logger) *firewaller {
	return &firewaller{src: src, nsName: nsName, log: log, apply: applyNft, exists: netnsExists, applied: map[int]string{}}
}

// Sync brings every droplet's rules up to date with the simulator. It
// returns at once when another call is already syncing (that call picks up
// this change before it returns).
func (f *firewaller) Sync(ctx context.Context) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.dirty = true
	if f.running {
		f.mu.Unlock()
		return
	}
	f.running = true
	for f.dirty {
		f.dirty = false
		f.mu.Unlock()
		f.syncOnce(ctx)
		f.mu.Lock()
	}
	f.running = false
	f.mu.Unlock()
}

func (f *firewaller) syncOnce(ctx context.Context) {
	snap := fwSnapshot{Firewalls: f.src.Firewalls(), Droplets: f.src.Droplets()}
	want := renderFirewalls(snap)
	names := map[int][]string{}
	for _, d := range snap.Droplets {
		for _, fw := range snap.Firewalls {
			if targets(fw, d) {
				names[d.ID] = append(names[d.ID], fw.Name)
			}
		}
	}
	for id := range f.applied {
		if _, ok := want[id]; !ok {
			delete(f.applied, id) // deleted: its namespace went with it
		}
	}
	for _, d := range snap.Droplets {
		text := want[d.ID]
		if f.applied[d.ID] == text {
			continue
		}
		ns := f.nsName(d.ID)
		if !f.exists(ns) {
			continue // not built yet (or just deleted): the create hook syncs again
		}
		start := time.Now()
		if err := f.apply(ctx, ns, text); err != nil {
			if f.exists(ns) {
				f.log.Error("cloud firewall: apply", "droplet", d.ID, "namespace", ns, "err", err)
			}
			continue // retried at the next Sync (the serve tick at the latest)
		}
		added, removed := lineDiff(f.applied[d.ID], text)
		f.applied[d.ID] = text
		if text == "" {
			f.log.Info("cloud firewall: droplet unfiltered (no firewall targets it)", "droplet", d.ID, "took", time.Since(start).Round(time.Microsecond).String())
			continue
		}
		f.log.Info("cloud firewall: rules applied", "droplet", d.ID, "firewalls", strings.Join(names[d.ID], ","),
			"added", added, "removed", removed, "took", time.Since(start).Round(time.Microsecond).String())
	}
}

// applyNft replaces the sandbox's tables in a namespace by text (none when
// text is ""), in one nft transaction: the namespace never sees a
// half-loaded ruleset nor a moment without one. Conntrack entries survive,
// so established connections keep flowing (DO keeps them when rules
// change). Other tables (iptables, Docker, a test's own rules) are left
// alone.
func applyNft(ctx context.Context, ns, text string) error {
	// "table X" first makes "delete table X" valid when there is none yet
	// (nft 1.0.6 has no "destroy").
	script := fmt.Sprintf("table %[1]s %[2]s\ndelete table %[1]s %[2]s\ntable netdev %[2]s\ndelete table netdev %[2]s\n%[3]s", nftFamily, nftTable, text)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	_, err := extcmd.Combined(cmd)
	return err
}

// lineDiff lists the firewall rule lines only in b (added) and only in a
// (removed), for the log.
func lineDiff(a, b string) (added, removed []string) {
	lines := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			// The firewalls' own rules; the fixed part of every chain
			// (interface, metadata, IPv6, protocols, state) is noise here.
			l = strings.TrimSpace(l)
			if (strings.HasPrefix(l, "ip saddr ") || strings.HasPrefix(l, "ip daddr ")) && !strings.HasPrefix(l, "ip daddr "+metadataIP+" ") {
				out = append(out, l)
			}
		}
		return out
	}
	la, lb := lines(a), lines(b)
	for _, l := range lb {
		if !slices.Contains(la, l) {
			added = append(added, l)
		}
	}
	for _, l := range la {
		if !slices.Contains(lb, l) {
			removed = append(removed, l)
		}
	}
	return added, removed
}
