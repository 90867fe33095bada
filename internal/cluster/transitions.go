package cluster

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Transitions are pure: they take a state, return a new one (or an error
// naming the input), and never touch the network. The CLI runs them inside
// Store.Update, so a lost compare-and-swap simply re-runs them on fresh state.

// ErrNoChange is returned by a mutation that would change nothing; Update
// then writes nothing.
var ErrNoChange = errors.New("no change")

// AddNodes appends count new nodes in lifecycle provisioning. Each gets a
// fresh two-word id and a priority below every existing one (150, 140, 130…;
// when the steps run out, the highest free priority below the lowest, then
// any free one), so existing nodes keep their rank. The first node of an
// empty cluster is active.
func AddNodes(s *State, count int, namer *Namer, now time.Time) (*State, []string, error) {
	if count < 1 {
		return nil, nil, fieldErr("count", fmt.Sprint(count), "must be at least 1")
	}
	taken := map[string]bool{}
	for _, n := range s.Nodes {
		taken[n.ID] = true
	}
	var ids []string
	for range count {
		id, err := namer.Next(taken)
		if err != nil {
			return nil, nil, err
		}
		taken[id] = true
		ids = append(ids, id)
	}
	next, err := AddNamedNodes(s, ids, now)
	return next, ids, err
}

// AddNamedNodes is AddNodes with the ids chosen by the caller (an add
// resumed after a crash re-adds the ids it had journaled). Ids already in
// the cluster are skipped; if none is new, it returns ErrNoChange.
func AddNamedNodes(s *State, ids []string, now time.Time) (*State, error) {
	next := s.Clone()
	used := map[int]bool{}
	for _, n := range next.Nodes {
		used[n.Priority] = true
	}
	added := 0
	for _, id := range ids {
		if err := ValidateNodeID(id); err != nil {
			return nil, err
		}
		if next.Node(id) != nil {
			continue
		}
		prio, err := nextPriority(next.Nodes, used)
		if err != nil {
			return nil, err
		}
		role := RoleStandby
		if next.Active() == nil {
			role = RoleActive
		}
		next.Nodes = append(next.Nodes, Node{
			ID: id, Priority: prio, Role: role, Lifecycle: Provisioning, CreatedAt: now.UTC(),
		})
		used[prio] = true
		added++
	}
	if added == 0 {
		return nil, ErrNoChange
	}
	return next, nil
}

func nextPriority(nodes []Node, used map[int]bool) (int, error) {
	if len(nodes) == 0 {
		return FirstPriority, nil
	}
	lowest := MaxPriority + 1
	for _, n := range nodes {
		lowest = min(lowest, n.Priority)
	}
	if p := lowest - PriorityStep; p >= MinPriority {
		return p, nil
	}
	for p := lowest - 1; p >= MinPriority; p-- {
		if !used[p] {
			return p, nil
		}
	}
	for p := MaxPriority; p >= MinPriority; p-- {
		if !used[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free VRRP priority left (%d nodes)", len(nodes))
}

// Replacement returns the node replacing id (its Replaces is id), or nil.
func (s *State) Replacement(id string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Replaces == id {
			return &s.Nodes[i]
		}
	}
	return nil
}

// AddReplacement adds a provisioning node that replaces node old, made
// from image (a snapshot id; "" for the cluster's), with a fresh two-word
// id and, for now, a priority below every other node's (it takes old's
// rank when old goes: FinishReplacement). It returns the new id. A node
// already replacing old is returned as it is, with ErrNoChange: a re-run
// after a crash finishes that one instead of making a second.
func AddReplacement(s *State, old, image string, namer *Namer, now time.Time) (*State, string, error) {
	if r := s.Replacement(old); r != nil {
		return nil, r.ID, ErrNoChange
	}
	o := s.Node(old)
	if o == nil {
		return nil, "", fieldErr("node", old, "not in cluster %s", s.Name)
	}
	if o.Lifecycle != Ready {
		return nil, "", fieldErr("node", old, "is %s; only a ready node can be replaced", o.Lifecycle)
	}
	next, ids, err := AddNodes(s, 1, namer, now)
	if err != nil {
		return nil, "", err
	}
	n := next.Node(ids[0])
	n.Replaces, n.Image = old, image
	return next, n.ID, next.Validate()
}

// FinishReplacement removes node old (standby, its droplet gone) and gives
// the node that replaced it old's priority when that is higher than its
// own, so the nodes' order is what it was; the replacement's Replaces is
// cleared, and so is its image (the droplet exists). One write, so a crash leaves either both nodes or the finished
// replacement. Like RemoveNode, old must not be the active node.
func FinishReplacement(s *State, old string) (*State, error) {
	o := s.Node(old)
	r := s.Replacement(old)
	if o == nil && r == nil {
		return nil, ErrNoChange
	}
	var next *State
	if o != nil {
		var err error
		if next, err = RemoveNode(s, old); err != nil {
			return nil, err
		}
	} else {
		next = s.Clone()
	}
	if r != nil {
		n := next.Node(r.ID)
		// Both fields exist only while a replacement is under way: the
		// droplet is made, DO knows its image, and a state without them
		// is one every dynia-pull before them still reads.
		n.Replaces, n.Image = "", ""
		if o != nil && o.Priority > n.Priority {
			n.Priority = o.Priority
		}
	}
	return next, next.Validate()
}

// SetNodeNetwork records a node's droplet and addresses and marks it ready.
func SetNodeNetwork(s *State, id string, dropletID int, publicIP, privateIP string) (*State, error) {
	next := s.Clone()
	n := next.Node(id)
	if n == nil {
		return nil, fieldErr("node", id, "not in cluster %s", s.Name)
	}
	if n.DropletID == dropletID && n.PublicIP == publicIP && n.PrivateIP == privateIP && n.Lifecycle == Ready {
		return nil, ErrNoChange
	}
	n.DropletID, n.PublicIP, n.PrivateIP = dropletID, publicIP, privateIP
	if n.Lifecycle == Provisioning {
		n.Lifecycle = Ready
	}
	// A node being removed whose droplet is gone keeps its addresses in the
	// state until its remove writes the last step; DigitalOcean may give
	// them to a droplet created meanwhile (a concurrent `node add`). That
	// this droplet has them proves the other's is gone: the removing node
	// loses them (nothing renders a removing node's addresses).
	for i := range next.Nodes {
		o := &next.Nodes[i]
		if o.ID == id || o.Lifecycle != Removing {
			continue
		}
		if o.PrivateIP == privateIP {
			o.PrivateIP = ""
		}
		if o.PublicIP == publicIP {
			o.PublicIP = ""
		}
	}
	return next, next.Validate()
}

// SetDroplet records the droplet id of a provisioning node (before it is
// active and has addresses), so a crash after droplet creation adopts it.
func SetDroplet(s *State, id string, dropletID int) (*State, error) {
	next := s.Clone()
	n := next.Node(id)
	if n == nil {
		return nil, fieldErr("node", id, "not in cluster %s", s.Name)
	}
	if n.DropletID == dropletID {
		return nil, ErrNoChange
	}
	n.DropletID = dropletID
	return next, nil
}

// MarkDraining moves a node to draining: HAProxy everywhere stops sending it
// new requests but lets current ones finish.
func MarkDraining(s *State, id string) (*State, error) {
	return setLifecycle(s, id, Draining)
}

// MarkRemoving takes a node out of every backend ahead of destroying it.
func MarkRemoving(s *State, id string) (*State, error) {
	return setLifecycle(s, id, Removing)
}

func setLifecycle(s *State, id string, lc Lifecycle) (*State, error) {
	next := s.Clone()
	n := next.Node(id)
	if n == nil {
		return nil, fieldErr("node", id, "not in cluster %s", s.Name)
	}
	if n.Lifecycle == lc {
		return nil, ErrNoChange
	}
	n.Lifecycle = lc
	return next, nil
}

// RemoveNode deletes a node from the table. The active node can only be
// removed when it is the last one: otherwise MakeActive another node first,
// so the Reserved IP always has a holder the state agrees on.
func RemoveNode(s *State, id string) (*State, error) {
	n := s.Node(id)
	if n == nil {
		return nil, ErrNoChange // already gone: re-running a remove is fine
	}
	if n.Role == RoleActive && len(s.Nodes) > 1 {
		return nil, fieldErr("node", id, "is the active node: make another node active first")
	}
	next := s.Clone()
	next.Nodes = next.Nodes[:0]
	for _, m := range s.Nodes {
		if m.ID != id {
			next.Nodes = append(next.Nodes, m)
		}
	}
	return next, nil
}

// MakeActive makes id the active node and gives it the highest priority by
// swapping priorities with the current top node, so priorities stay unique
// and keepalived agrees with the state.
func MakeActive(s *State, id string) (*State, error) {
	next := s.Clone()
	target := next.Node(id)
	if target == nil {
		return nil, fieldErr("node", id, "not in cluster %s", s.Name)
	}
	if target.Lifecycle != Ready {
		return nil, fieldErr("node", id, "is %s, only a ready node can become active", target.Lifecycle)
	}
	top := target
	for i := range next.Nodes {
		if next.Nodes[i].Priority > top.Priority {
			top = &next.Nodes[i]
		}
	}
	if target.Role == RoleActive && top == target {
		return nil, ErrNoChange
	}
	target.Priority, top.Priority = top.Priority, target.Priority
	for i := range next.Nodes {
		next.Nodes[i].Role = RoleStandby
	}
	target.Role = RoleActive
	return next, nil
}

// NextActive returns the ready node that should take over when id leaves:
// the highest priority ready node other than id, or nil.
func NextActive(s *State, id string) *Node {
	var best *Node
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.ID == id || n.Lifecycle != Ready {
			continue
		}
		if best == nil || n.Priority > best.Priority {
			best = n
		}
	}
	return best
}

// SortedByPriority returns the nodes, highest priority first.
func SortedByPriority(nodes []Node) []Node {
	out := append([]Node(nil), nodes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Priority > out[j].Priority })
	return out
}
