package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// subSecondAdvert is the sub-second row's advert_int: VRRPv3 (keepalived
// switches to it for a fractional interval, internal/render).
const subSecondAdvert = 0.25

// haSetup is what a failover row powers off: dynia's cluster or the recipe.
type haSetup struct {
	name, variant string
	rip           string
	ready         func() error
	afterPowerOn  func(id int)
}

// failoverRun is one power-off.
type failoverRun struct {
	Setup, Variant string
	Assign         time.Duration
	Run            int
	Outage         time.Duration // -1: not recovered within the bound
	Failed, Total  int
}

// failoverBound is how long a run waits for service to come back.
const failoverBound = 90 * time.Second

// powerOffRuns powers the Reserved IP's holder off runs times under a
// request loop (a GET on a new connection every 50 ms, 2 s timeout) and
// powers it on again after each.
func (r *Runner) powerOffRuns(sb *Sandbox, h haSetup, assign time.Duration, runs int) []failoverRun {
	var out []failoverRun
	for i := 0; i < runs; i++ {
		r.WaitFor(4*time.Minute, h.ready)
		holder := sb.Holder(h.rip)
		load := GetLoop("http://"+h.rip+"/", 50*time.Millisecond, failoverBound+30*time.Second)
		time.Sleep(time.Second)
		cut := time.Now()
		if err := sb.Cloud().PowerOff(context.Background(), holder); err != nil {
			r.Fatalf("power off %d: %v", holder, err)
		}
		sb.waitRecovered(load, h.rip, holder, cut)
		o := Analyze(load.Stop())
		run := failoverRun{Setup: h.name, Variant: h.variant, Assign: assign, Run: i + 1, Outage: o.Outage, Failed: o.Failed, Total: o.Total}
		out = append(out, run)
		r.Logf("failover %s %s assign %v run %d: outage %v, %d of %d requests failed", h.name, h.variant, assign, i+1, o.Outage, o.Failed, o.Total)
		if err := sb.Cloud().PowerOn(context.Background(), holder); err != nil {
			r.Fatalf("power on %d: %v", holder, err)
		}
		if h.afterPowerOn != nil {
			h.afterPowerOn(holder)
		}
	}
	return out
}

// failoverTail is how long a request loop runs on after service came back,
// before it is checked once more: a late blip (an assign retried while the
// first is in progress) is then measured to its end, not cut off by the
// loop's stop and counted as not recovered.
const failoverTail = time.Second

// waitRecovered waits until the Reserved IP left holder and the loop is
// healthy (HealthyFor, 20 requests since cut), failoverBound at most after
// cut; then it lets the loop run failoverTail more and waits until it is
// healthy again.
func (sb *Sandbox) waitRecovered(load *Loop, rip string, holder int, cut time.Time) {
	healthy := func() bool {
		hd := sb.Holder(rip)
		return hd != holder && hd != 0 && load.HealthyFor(20, cut) == nil
	}
	deadline := cut.Add(failoverBound)
	for !healthy() {
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(failoverTail)
	for !healthy() && time.Now().Before(deadline.Add(failoverTail)) {
		time.Sleep(100 * time.Millisecond)
	}
}

// dyniaSetup is a dynia cluster as a failover subject.
func dyniaSetup(sb *Sandbox, name, variant, rip string) haSetup {
	return haSetup{name: "dynia", variant: variant, rip: rip, ready: func() error {
		for _, n := range sb.Nodes(name) {
			if n.Status != "up" {
				return fmt.Errorf("node %s is %s (%s)", n.ID, n.Status, n.HealthReason)
			}
		}
		_, err := httpGet("http://" + rip + "/")
		return err
	}}
}

// recipeSetup is the community recipe as a failover subject.
func recipeSetup(rc *Recipe) haSetup {
	return haSetup{name: "recipe", variant: "advert 1 s (VRRPv2)", rip: rc.RIP, ready: rc.Ready,
		afterPowerOn: func(id int) { rc.Start(d2i(rc, id)) }}
}

// setAdvert changes the cluster's advert_int and waits until every node's
// keepalived.conf has it.
func (r *Runner) setAdvert(sb *Sandbox, name string, adv float64) {
	sb.Update(name, func(st *cluster.State) error { st.HA.AdvertInterval = adv; return nil })
	want := "advert_int " + strconv.FormatFloat(adv, 'f', -1, 64)
	r.WaitFor(time.Minute, func() error {
		for _, n := range sb.Nodes(name) {
			b, err := os.ReadFile(filepath.Join(sb.DropletDir(n.DropletID), "root", "etc", "keepalived", "keepalived.conf"))
			if err != nil || !strings.Contains(string(b), want) {
				return fmt.Errorf("node %s: keepalived.conf without %q yet (%v)", n.ID, want, err)
			}
		}
		return nil
	})
	sb.WaitUp(name, 4*time.Minute)
}

func runFailover(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("Two-node setups in the sandbox (firewalls enforced, docker runtime): dynia (`create-ha` + `node add`, demo-app v1) "+
		"and the community recipe rebuilt from its published description ([DO tutorial](%s); bare droplets without a cloud firewall, "+
		"as the tutorial makes none). A GET on a new connection to the Reserved IP every 50 ms (2 s timeout, at most 64 in flight); "+
		"after 1 s the holder is powered off through the DO API (the sandbox pulls its cable: silence, not refusal) and powered on "+
		"again once service is back. **Outage** = start of the first request hit (failed, or answered only after ≥ 1 s: "+
		"its SYN went to the dead droplet and was retransmitted after the move, Linux's initial retransmission timeout being 1 s) → "+
		"end of the first answer after it (the power action is delayed like the assignment in the 5 s rows, so the cut is taken from the traffic, not the API call); a run that "+
		"does not recover within %v counts as not recovered. Simulated assignment: the sandbox's `--action-delay` (0 s: the "+
		"assign action completes at once; 5 s: it stays in-progress for 5 s, and so do power actions). Sub-second: "+
		"`ha.advert_interval` %.2g s written to the state (no CLI flag sets it), VRRPv3.", RecipeURL, failoverBound, subSecondAdvert)
	var runs []failoverRun
	for _, assign := range []time.Duration{0, 5 * time.Second} {
		sb := r.UpSandbox("--action-delay", assign.String())
		func() {
			defer sb.Down()
			rip := sb.NewCluster("fo", 2)
			v2 := dyniaSetup(sb, "fo", "advert 1 s (VRRPv2)", rip)
			runs = append(runs, r.powerOffRuns(sb, v2, assign, r.cfg.Runs)...)
			// The last run's droplet is still booting: let it come up before
			// the state changes under it.
			r.WaitFor(4*time.Minute, v2.ready)
			r.setAdvert(sb, "fo", subSecondAdvert)
			runs = append(runs, r.powerOffRuns(sb, dyniaSetup(sb, "fo", fmt.Sprintf("advert %.2g s (VRRPv3)", subSecondAdvert), rip), assign, r.cfg.Runs)...)
			rc := sb.NewRecipe("rc")
			runs = append(runs, r.powerOffRuns(sb, recipeSetup(rc), assign, r.cfg.Runs)...)
		}()
	}
	var raw [][]string
	for _, f := range runs {
		raw = append(raw, []string{f.Setup, f.Variant, f.Assign.String(), strconv.Itoa(f.Run),
			strconv.FormatFloat(Seconds([]time.Duration{f.Outage})[0], 'f', 3, 64), strconv.Itoa(f.Failed), strconv.Itoa(f.Total)})
	}
	res.Raw = append(res.Raw, r.WriteCSV("failover.csv", []string{"setup", "variant", "assign", "run", "outage_s", "failed", "requests"}, raw))

	tbl := Table{Title: "Outage per power-off (seconds) and failed requests per failover",
		Columns: []string{"setup", "VRRP", "assignment", "p50", "p95", "max", "runs", "failed requests (p50 / max)"}}
	var groups []failoverGroup
	for _, f := range runs {
		k := len(groups) - 1
		if k < 0 || groups[k].setup != f.Setup || groups[k].variant != f.Variant || groups[k].assign != f.Assign {
			groups = append(groups, failoverGroup{setup: f.Setup, variant: f.Variant, assign: f.Assign})
			k++
		}
		groups[k].outages = append(groups[k].outages, f.Outage)
		groups[k].failed = append(groups[k].failed, float64(f.Failed))
	}
	for _, g := range groups {
		s := Summarize(Seconds(g.outages))
		fs := Summarize(g.failed)
		tbl.Rows = append(tbl.Rows, append(append([]string{g.setup, g.variant, assignName(g.assign)}, summaryCells(s)...),
			fnum(fs.P50, "")+" / "+fnum(fs.Max, "")))
		if g.setup == "dynia" && g.assign == 0 {
			if strings.Contains(g.variant, "VRRPv2") {
				res.Targets = append(res.Targets, target("failover p50 ≤ 4 s at advert 1 s, instant assignment", s.P50, 4, "s"))
			} else {
				res.Targets = append(res.Targets, target("failover p50 ≤ 2 s sub-second, instant assignment", s.P50, 2, "s"))
			}
		}
	}
	res.Tables = append(res.Tables, tbl)
	if p := r.plotFailover(groups); p != nil {
		res.Plots = append(res.Plots, *p)
	}
}

type failoverGroup struct {
	setup, variant string
	assign         time.Duration
	outages        []time.Duration
	failed         []float64
}

func assignName(d time.Duration) string {
	if d == 0 {
		return "instant"
	}
	return d.String()
}

// atof parses a float, NaN when it is not one.
func atof(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}
