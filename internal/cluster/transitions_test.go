package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prios(s *State) map[string]int {
	m := map[string]int{}
	for _, n := range s.Nodes {
		m[n.ID] = n.Priority
	}
	return m
}

func TestAddNodesPriorities(t *testing.T) {
	t.Parallel()
	s := New("myapp", "sgp1", "s-1vcpu-1gb", "img", t0)
	s, ids, err := AddNodes(s, 3, NewNamer(3), t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{150, 140, 130}
	for i, id := range ids {
		n := s.Node(id)
		if n.Priority != want[i] {
			t.Errorf("node %d priority %d, want %d", i, n.Priority, want[i])
		}
		if n.Lifecycle != Provisioning {
			t.Errorf("node %d lifecycle %s, want provisioning", i, n.Lifecycle)
		}
	}
	if s.Active() == nil || s.Active().ID != ids[0] {
		t.Fatalf("first node should be active, got %+v", s.Active())
	}
	// Fill up to the floor and past it: priorities stay unique and in range.
	s, _, err = AddNodes(s, 40, NewNamer(4), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("after 43 nodes: %v", err)
	}
	for _, n := range s.Nodes {
		if n.Role == RoleActive && n.ID != ids[0] {
			t.Fatalf("a second node became active: %s", n.ID)
		}
	}
}

func TestAddNodesRejectsBadCount(t *testing.T) {
	t.Parallel()
	s := New("myapp", "sgp1", "s-1vcpu-1gb", "img", t0)
	if _, _, err := AddNodes(s, 0, NewNamer(1), t0); err == nil {
		t.Fatal("count 0 accepted")
	}
}

func TestAddDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	s := sample(t)
	before := s.Clone()
	if _, _, err := AddNodes(s, 2, NewNamer(9), t0); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, s); diff != "" {
		t.Fatalf("AddNodes changed its input:\n%s", diff)
	}
}

func TestMakeActive(t *testing.T) {
	t.Parallel()
	s := sample(t)
	old := s.Active().ID
	third := s.Nodes[2].ID
	before := prios(s)
	next, err := MakeActive(s, third)
	if err != nil {
		t.Fatal(err)
	}
	if next.Active().ID != third {
		t.Fatalf("active is %s, want %s", next.Active().ID, third)
	}
	if p := next.Node(third).Priority; p != 150 {
		t.Fatalf("new active priority %d, want the top 150", p)
	}
	if p := next.Node(old).Priority; p != before[third] {
		t.Fatalf("old active priority %d, want swapped %d", p, before[third])
	}
	if next.Node(old).Role != RoleStandby {
		t.Fatal("old active is still active")
	}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeActive(next, third); !errors.Is(err, ErrNoChange) {
		t.Fatalf("making the active node active again: %v, want ErrNoChange", err)
	}
	if _, err := MakeActive(next, "no-such"); err == nil {
		t.Fatal("unknown node accepted")
	}
	drained, _ := MarkDraining(next, old)
	if _, err := MakeActive(drained, old); err == nil {
		t.Fatal("a draining node became active")
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	s := sample(t)
	active := s.Active().ID
	standby := s.Nodes[1].ID
	if _, err := RemoveNode(s, active); err == nil {
		t.Fatal("removed the active node while others exist")
	}
	next, err := RemoveNode(s, standby)
	if err != nil {
		t.Fatal(err)
	}
	if next.Node(standby) != nil || len(next.Nodes) != 2 {
		t.Fatalf("node still there: %+v", next.Nodes)
	}
	if _, err := RemoveNode(next, standby); !errors.Is(err, ErrNoChange) {
		t.Fatalf("second remove: %v, want ErrNoChange", err)
	}
	if got := NextActive(next, active); got == nil || got.ID == active {
		t.Fatalf("NextActive = %+v", got)
	}
	single := New("solo", "nyc3", "s-1vcpu-1gb", "img", t0)
	single, ids, _ := AddNodes(single, 1, NewNamer(2), t0)
	if _, err := RemoveNode(single, ids[0]); err != nil {
		t.Fatalf("removing the last node: %v", err)
	}
}

func TestDrainingAndRemoving(t *testing.T) {
	t.Parallel()
	s := sample(t)
	id := s.Nodes[1].ID
	d, err := MarkDraining(s, id)
	if err != nil || d.Node(id).Lifecycle != Draining {
		t.Fatalf("drain: %v %+v", err, d)
	}
	if _, err := MarkDraining(d, id); !errors.Is(err, ErrNoChange) {
		t.Fatalf("drain twice: %v", err)
	}
	r, err := MarkRemoving(d, id)
	if err != nil || r.Node(id).Lifecycle != Removing {
		t.Fatalf("removing: %v", err)
	}
}

func TestAddNamedNodes(t *testing.T) {
	t.Parallel()
	s := sample(t)
	next, err := AddNamedNodes(s, []string{"misty-owl", s.Nodes[0].ID}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Nodes) != 4 || next.Node("misty-owl").Lifecycle != Provisioning {
		t.Fatalf("nodes: %+v", next.Nodes)
	}
	if _, err := AddNamedNodes(next, []string{"misty-owl"}, t0); !errors.Is(err, ErrNoChange) {
		t.Fatalf("re-adding: %v, want ErrNoChange", err)
	}
	if _, err := AddNamedNodes(next, []string{"Not An Id"}, t0); err == nil {
		t.Fatal("bad id accepted")
	}
}

// TestSetNodeNetworkTakesAddressesOfARemovedDroplet: a node being removed
// whose droplet is gone may see its addresses given to a droplet created
// meanwhile; the new node gets them and the removing node loses them,
// where a ready node's duplicate address is still refused.
func TestSetNodeNetworkTakesAddressesOfARemovedDroplet(t *testing.T) {
	t.Parallel()
	s := sample(t)
	gone := s.Nodes[2]
	s, err := MarkRemoving(s, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	s, ids, err := AddNodes(s, 1, NewNamer(9), t0)
	if err != nil {
		t.Fatal(err)
	}
	next, err := SetNodeNetwork(s, ids[0], 2000, gone.PublicIP, gone.PrivateIP)
	if err != nil {
		t.Fatalf("a new node with the removing node's addresses: %v", err)
	}
	if n := next.Node(ids[0]); n.PrivateIP != gone.PrivateIP || n.PublicIP != gone.PublicIP || n.Lifecycle != Ready {
		t.Errorf("new node %+v", n)
	}
	if o := next.Node(gone.ID); o.PrivateIP != "" || o.PublicIP != "" || o.Lifecycle != Removing {
		t.Errorf("removing node %+v, want it without addresses", o)
	}
	ready := s.Nodes[1]
	if _, err := SetNodeNetwork(s, ids[0], 2000, "198.51.100.99", ready.PrivateIP); err == nil || !strings.Contains(err.Error(), "same as node "+ready.ID) {
		t.Errorf("a new node with a ready node's private IP: %v, want refused", err)
	}
}

// TestReplacement: a replacement is added below every node, found again
// instead of added twice, and when the old node goes it takes the old
// node's priority (a standby's) or keeps its own higher one (the active
// node's, which it took by MakeActive), so the order is what it was.
func TestReplacement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		old     int // index in sample's nodes
		promote bool
	}{
		{"standby", 1, false},
		{"active", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sample(t)
			old := s.Nodes[tc.old]
			next, id, err := AddReplacement(s, old.ID, "654321", NewNamer(5), t0)
			if err != nil {
				t.Fatal(err)
			}
			r := next.Node(id)
			if r.Replaces != old.ID || r.Image != "654321" || r.Lifecycle != Provisioning || r.Priority >= 130 {
				t.Fatalf("replacement %+v", r)
			}
			if _, again, err := AddReplacement(next, old.ID, "654321", NewNamer(6), t0); !errors.Is(err, ErrNoChange) || again != id {
				t.Fatalf("second AddReplacement: %q, %v; want %q and ErrNoChange", again, err, id)
			}
			next, err = SetNodeNetwork(next, id, 3000, "198.51.100.99", "10.10.0.99")
			if err != nil {
				t.Fatal(err)
			}
			if tc.promote {
				if next, err = MakeActive(next, id); err != nil {
					t.Fatal(err)
				}
			}
			done, err := FinishReplacement(next, old.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := prios(s)
			delete(want, old.ID)
			want[id] = old.Priority
			if diff := cmp.Diff(want, prios(done)); diff != "" {
				t.Errorf("priorities after the replacement (-want +got):\n%s", diff)
			}
			if n := done.Node(id); n.Replaces != "" || n.Image != "" || n.Role != old.Role {
				t.Errorf("finished replacement %+v, want no replaces, no image and role %s", n, old.Role)
			}
			if _, err := FinishReplacement(done, old.ID); !errors.Is(err, ErrNoChange) {
				t.Errorf("FinishReplacement again: %v, want ErrNoChange", err)
			}
		})
	}
	s := sample(t)
	if _, _, err := AddReplacement(s, "no-such", "", NewNamer(5), t0); err == nil {
		t.Error("replacing an unknown node: no error")
	}
	bad := s.Clone()
	bad.Nodes[1].Replaces = bad.Nodes[1].ID
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "replaces") {
		t.Errorf("a node replacing itself: %v", err)
	}
}
