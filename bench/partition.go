package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// partitionResult is one setup's VRRP partition.
type partitionResult struct {
	Setup         string
	Moves         int // Reserved IP moves during the partition and 10 s after healing
	MovesHealed   int // of which after healing
	Failed, Total int
	Outage        time.Duration
	// AfterOutage is the outage when the holder is then powered off (-1:
	// not recovered within the bound).
	AfterOutage time.Duration
	AfterFailed int
}

// vrrpCut drops VRRP (IP protocol 112) arriving in a namespace, as the
// sandbox docs' "Breaking things on purpose" does; on dynia's nodes it
// hits the adverts after WireGuard decrypted them.
func vrrpCut(ns string, on bool) error {
	op := "-I"
	if !on {
		op = "-D"
	}
	_, err := Netns(ns, "iptables", op, "INPUT", "-p", "vrrp", "-j", "DROP")
	return err
}

// partition cuts VRRP both ways between the two nodes for d while both stay
// healthy, counting Reserved IP moves (polled every 200 ms) and failed
// requests; then powers the holder off and measures the outage.
func (r *Runner) partition(sb *Sandbox, h haSetup, namespaces []string, d time.Duration) partitionResult {
	r.WaitFor(4*time.Minute, h.ready)
	res := partitionResult{Setup: h.name}
	load := GetLoop("http://"+h.rip+"/", 100*time.Millisecond, d+time.Minute)
	time.Sleep(time.Second)
	for _, ns := range namespaces {
		if err := vrrpCut(ns, true); err != nil {
			r.Fatalf("cut VRRP: %v", err)
		}
	}
	last := sb.Holder(h.rip)
	count := func(until time.Time) int {
		n := 0
		for time.Now().Before(until) {
			if hd := sb.Holder(h.rip); hd != last {
				n++
				r.Logf("partition %s: Reserved IP moved %d → %d", h.name, last, hd)
				last = hd
			}
			time.Sleep(200 * time.Millisecond)
		}
		return n
	}
	res.Moves = count(time.Now().Add(d))
	for _, ns := range namespaces {
		if err := vrrpCut(ns, false); err != nil {
			r.Fatalf("heal VRRP: %v", err)
		}
	}
	res.MovesHealed = count(time.Now().Add(10 * time.Second))
	res.Moves += res.MovesHealed
	o := Analyze(load.Stop())
	res.Failed, res.Total, res.Outage = o.Failed, o.Total, o.Outage

	// Then the holder dies: does the other node take over?
	holder := sb.Holder(h.rip)
	load = GetLoop("http://"+h.rip+"/", 50*time.Millisecond, failoverBound+30*time.Second)
	time.Sleep(time.Second)
	cut := time.Now()
	if err := sb.Cloud().PowerOff(context.Background(), holder); err != nil {
		r.Fatalf("power off %d: %v", holder, err)
	}
	sb.waitRecovered(load, h.rip, holder, cut)
	o = Analyze(load.Stop())
	res.AfterOutage, res.AfterFailed = o.Outage, o.Failed
	r.Logf("partition %s: %d moves (%d after healing), %d of %d requests failed; holder then powered off: outage %v", h.name, res.Moves, res.MovesHealed, res.Failed, res.Total, o.Outage)
	if err := sb.Cloud().PowerOn(context.Background(), holder); err != nil {
		r.Fatalf("power on %d: %v", holder, err)
	}
	if h.afterPowerOn != nil {
		h.afterPowerOn(holder)
	}
	return res
}

func runPartition(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("Two nodes, both healthy; VRRP (IP protocol 112) dropped on arrival in both droplets' namespaces "+
		"(`iptables -I INPUT -p vrrp -j DROP`; on dynia's nodes the adverts are dropped after WireGuard decrypted them) for %v, then "+
		"healed. Reserved IP moves are counted from the DO API every 200 ms during the partition and 10 s after it; a GET every "+
		"100 ms to the Reserved IP counts failed requests. Then the node holding the Reserved IP is powered off: does the other "+
		"node take over (within %v)? Instant assignment, firewalls enforced (the recipe's droplets have none, as in the tutorial).",
		r.cfg.PartitionFor, failoverBound)
	sb := r.UpSandbox()
	defer sb.Down()
	rip := sb.NewCluster("pt", 2)
	var nss []string
	for _, n := range sb.Nodes("pt") {
		nss = append(nss, sb.Droplet(n.DropletID).Namespace)
	}
	results := []partitionResult{r.partition(sb, dyniaSetup(sb, "pt", "advert 1 s (VRRPv2)", rip), nss, r.cfg.PartitionFor)}
	rc := sb.NewRecipe("rc")
	results = append(results, r.partition(sb, recipeSetup(rc), []string{rc.Nodes[0].NS, rc.Nodes[1].NS}, r.cfg.PartitionFor))

	tbl := Table{Title: fmt.Sprintf("A %v VRRP partition between two healthy nodes", r.cfg.PartitionFor),
		Columns: []string{"setup", "Reserved IP moves", "of which on healing", "failed requests", "then the holder powered off: outage"}}
	var raw [][]string
	for _, p := range results {
		after := fsec(p.AfterOutage.Seconds())
		if p.AfterOutage < 0 {
			after = fmt.Sprintf("not recovered within %v", failoverBound)
		}
		tbl.Rows = append(tbl.Rows, []string{p.Setup, strconv.Itoa(p.Moves), strconv.Itoa(p.MovesHealed),
			fmt.Sprintf("%d of %d", p.Failed, p.Total), after})
		raw = append(raw, []string{p.Setup, r.cfg.PartitionFor.String(), strconv.Itoa(p.Moves), strconv.Itoa(p.MovesHealed),
			strconv.Itoa(p.Failed), strconv.Itoa(p.Total), strconv.FormatFloat(p.AfterOutage.Seconds(), 'f', 3, 64), strconv.Itoa(p.AfterFailed)})
		if p.Setup == "dynia" {
			res.Targets = append(res.Targets, target("≤ 1 Reserved IP move per VRRP partition", float64(p.Moves), 1, "moves"))
		}
	}
	res.Tables = append(res.Tables, tbl)
	res.Raw = append(res.Raw, r.WriteCSV("partition.csv", []string{"setup", "partition", "moves", "moves_on_healing", "failed", "requests", "after_outage_s", "after_failed"}, raw))
}
