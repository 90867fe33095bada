package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/dosim"
)

// fakeCloud is a firewaller source whose reads may run a callback first,
// as a simulator read may deliver hooks on the reading goroutine.
type fakeCloud struct {
	mu     sync.Mutex
	fws    []dosim.Firewall
	ds     []dosim.Droplet
	onRead func()
}

func (c *fakeCloud) Firewalls() []dosim.Firewall {
	c.mu.Lock()
	out := slices.Clone(c.fws)
	c.mu.Unlock()
	// The hook runs after the read: this pass has the old state.
	if f := c.take(); f != nil {
		f()
	}
	return out
}

func (c *fakeCloud) Droplets() []dosim.Droplet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ds)
}

func (c *fakeCloud) take() func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.onRead
	c.onRead = nil
	return f
}

func (c *fakeCloud) set(f func(c *fakeCloud)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// TestFirewallerSync: only droplets whose ruleset changed are touched; a
// failed apply is retried at the next Sync; a Sync arriving during a pass
// (here: from a hook delivered by the simulator read, on the same
// goroutine) causes one more pass instead of a deadlock; a namespace not
// there yet is skipped, and a deleted droplet forgotten.
func TestFirewallerSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cloud := &fakeCloud{
		ds: []dosim.Droplet{
			{ID: 1, Name: "a", Tags: []string{"web"}, PublicIPv4: "198.51.100.2", PrivateIPv4: "10.10.0.2"},
			{ID: 2, Name: "b", PublicIPv4: "198.51.100.3", PrivateIPv4: "10.10.0.3"},
			{ID: 3, Name: "c", Tags: []string{"web"}, PublicIPv4: "198.51.100.4", PrivateIPv4: "10.10.0.4"},
		},
		fws: []dosim.Firewall{{ID: "f1", Name: "web", Tags: []string{"web"}, InboundRules: []dosim.FirewallRule{
			{Protocol: "udp", Ports: "0", Sources: &dosim.FirewallTarget{Tags: []string{"web"}}}}}},
	}
	var mu sync.Mutex
	var calls []string
	failFor := map[string]bool{}
	namespaces := map[string]bool{"ns1": true, "ns2": true} // ns3 not built yet
	f := newFirewaller(cloud, func(id int) string { return fmt.Sprintf("ns%d", id) }, slog.New(slog.DiscardHandler))
	f.exists = func(ns string) bool { mu.Lock(); defer mu.Unlock(); return namespaces[ns] }
	f.apply = func(_ context.Context, ns, text string) error {
		mu.Lock()
		defer mu.Unlock()
		state := "table"
		if text == "" {
			state = "none"
		}
		calls = append(calls, ns+" "+state)
		if failFor[ns] {
			delete(failFor, ns)
			return errors.New("nft failed")
		}
		return nil
	}
	pass := func(want ...string) {
		t.Helper()
		mu.Lock()
		calls = nil
		mu.Unlock()
		f.Sync(ctx)
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff(want, calls); diff != "" {
			t.Errorf("applied (-want +got):\n%s", diff)
		}
	}

	pass("ns1 table") // b is untargeted and has no table; c's namespace is missing
	pass()            // nothing changed
	mu.Lock()
	namespaces["ns3"] = true
	mu.Unlock()
	pass("ns3 table")
	// b joins the tag: its own rules, and its addresses in a's and c's sources.
	cloud.set(func(c *fakeCloud) { c.ds[1].Tags = []string{"web"} })
	mu.Lock()
	failFor["ns1"] = true
	mu.Unlock()
	pass("ns1 table", "ns2 table", "ns3 table")
	pass("ns1 table") // the failed one, retried
	// A change reported while a pass reads the simulator: that pass sees
	// nothing new, one more pass applies it.
	cloud.set(func(c *fakeCloud) {
		c.onRead = func() {
			cloud.set(func(c *fakeCloud) {
				c.fws = []dosim.Firewall{{ID: "f1", Name: "web", DropletIDs: []int{2}, InboundRules: []dosim.FirewallRule{
					{Protocol: "udp", Ports: "53", Sources: &dosim.FirewallTarget{Tags: []string{"web"}}}}}}
			})
			f.Sync(ctx) // returns at once: a pass is running
		}
	})
	pass("ns1 none", "ns2 table", "ns3 none")
	// c deleted: forgotten; the others' sources lose it.
	cloud.set(func(c *fakeCloud) { c.ds = c.ds[:2] })
	mu.Lock()
	delete(namespaces, "ns3")
	mu.Unlock()
	pass("ns2 table")
	if _, ok := f.applied[3]; ok {
		t.Errorf("deleted droplet still remembered: %v", f.applied)
	}
	if !strings.Contains(f.applied[2], "ip saddr { 10.10.0.2, 10.10.0.3, 198.51.100.2, 198.51.100.3 } udp dport 53 accept") {
		t.Errorf("b's ruleset:\n%s", f.applied[2])
	}
}

// A nil firewaller is enforcement off: Sync does nothing.
func TestFirewallerOff(t *testing.T) {
	t.Parallel()
	var f *firewaller
	f.Sync(context.Background())
}
