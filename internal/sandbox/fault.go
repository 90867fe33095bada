package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/procstat"
)

// Faults a test or an operator injects into a running sandbox, to see what
// dynia does when part of the cloud fails:
//
//   - a partition cuts one droplet from one service (Cut, Heal): an
//     nftables chain in the droplet's namespace drops the traffic
//     silently, as a broken network does (the sender times out, nothing is
//     refused);
//   - a bucket outage (BucketOutage) drops all traffic to the S3 endpoint
//     in the router namespace, for every client: droplets, the CLI, tests;
//   - Kill SIGKILLs one of a droplet's processes, found by its pid file
//     (or, for the app, by the droplet's container cgroup), never by name.
//
// Every fault lives in a table of its own, inet dynia_fault, one chain per
// fault, so faults add up, each heals alone, and the cloud firewall's
// tables (cloud_firewall) are never touched. Nothing is stored on disk:
// the chains are the truth (Faults lists them), and `sandbox down` removes
// them with the namespaces.

// Partition targets: what Cut cuts a droplet from.
const (
	// CutBucket drops TCP from the droplet to the S3 endpoint (versitygw).
	CutBucket = "bucket"
	// CutAPI drops TCP from the droplet to the DO API.
	CutAPI = "api"
	// CutMetadata drops everything from the droplet to the metadata
	// service (169.254.169.254).
	CutMetadata = "metadata"
	// CutVRRP drops every VRRP advert (IP protocol 112) arriving at the
	// droplet, inside the WireGuard mesh too (after wireguard-go
	// decapsulated it): VRRP between this node and every other is cut
	// while all else flows.
	CutVRRP = "vrrp"
)

// CutTargets are the valid targets of Cut, in a stable order.
var CutTargets = []string{CutBucket, CutAPI, CutMetadata, CutVRRP}

const (
	faultTable = "dynia_fault"
	// outageChain is the bucket outage's chain in the router namespace.
	outageChain = "outage_bucket"
)

// ParseCutTarget checks a partition target (bad input for the CLI).
func ParseCutTarget(s string) (string, error) {
	if slices.Contains(CutTargets, s) {
		return s, nil
	}
	return "", fmt.Errorf("want one of %s", strings.Join(CutTargets, ", "))
}

// faultPlan reads the sandbox's layout from its config.
func faultPlan(dir string) (plan, error) {
	if dir == "" {
		dir = DefaultDir
	}
	var cfg config
	if err := readJSON(configPath(dir), &cfg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return plan{}, fmt.Errorf("no sandbox in %s (run `dynia sandbox up`): %w", dir, os.ErrNotExist)
		}
		return plan{}, err
	}
	return newPlan(cfg.Prefix, cfg.PublicRange)
}

// dropletNamespace is droplet id's namespace, which must exist: a fault on
// a deleted droplet (or a mistyped id) is an error, not a no-op.
func dropletNamespace(dir string, p plan, id int) (string, error) {
	ns := p.DropletNS(id)
	if !netnsExists(ns) {
		return "", fmt.Errorf("droplet %d: no namespace %s in the sandbox: %w", id, ns, os.ErrNotExist)
	}
	return ns, nil
}

// cutRule is the chain and rule that cut a droplet from target.
func cutRule(p plan, target string) (hook, rule string) {
	router := p.RouterIP().String()
	switch target {
	case CutBucket:
		return "output", fmt.Sprintf("ip daddr %s tcp dport %d drop", router, s3Port)
	case CutAPI:
		return "output", fmt.Sprintf("ip daddr %s tcp dport %d drop", router, apiPort)
	case CutMetadata:
		return "output", "ip daddr " + metadataIP + " drop"
	case CutVRRP:
		return "input", "meta l4proto 112 drop"
	}
	return "", ""
}

// chainScript adds (rule != "") or removes chain name of the fault table in
// one nft transaction. Adding replaces the chain's rules, so it is
// idempotent; "add chain" before "delete chain" makes removing a chain
// that is not there a no-op (nft 1.0.6 has no "destroy").
func chainScript(name, hook, rule string) string {
	spec := fmt.Sprintf("{ type filter hook %s priority 0; policy accept; }", hook)
	s := fmt.Sprintf("add table inet %[1]s\nadd chain inet %[1]s %[2]s %[3]s\n", faultTable, name, spec)
	if rule == "" {
		return s + fmt.Sprintf("delete chain inet %s %s\n", faultTable, name)
	}
	return s + fmt.Sprintf("flush chain inet %[1]s %[2]s\nadd rule inet %[1]s %[2]s %[3]s comment \"dynia sandbox fault\"\n", faultTable, name, rule)
}

func nftIn(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	_, err := extcmd.Combined(cmd)
	return err
}

// Cut partitions droplet id from target (CutBucket, CutAPI, CutMetadata,
// CutVRRP) until Heal: packets are dropped silently. Cutting twice is one
// cut. The cut survives a power cycle (the namespace stays) and goes with
// the droplet's deletion.
func Cut(ctx context.Context, dir string, id int, target string) error {
	return setCut(ctx, dir, id, target, true)
}

// Heal ends the cut of droplet id from target, or every cut of the droplet
// when target is "". Healing what is not cut is a no-op.
func Heal(ctx context.Context, dir string, id int, target string) error {
	if target == "" {
		var errs []error
		for _, t := range CutTargets {
			errs = append(errs, setCut(ctx, dir, id, t, false))
		}
		return errors.Join(errs...)
	}
	return setCut(ctx, dir, id, target, false)
}

func setCut(ctx context.Context, dir string, id int, target string, on bool) error {
	if _, err := ParseCutTarget(target); err != nil {
		return fmt.Errorf("sandbox fault: target %q: %w", target, err)
	}
	p, err := faultPlan(dir)
	if err != nil {
		return fmt.Errorf("sandbox fault: %w", err)
	}
	ns, err := dropletNamespace(dir, p, id)
	if err != nil {
		return fmt.Errorf("sandbox fault: %w", err)
	}
	hook, rule := cutRule(p, target)
	if !on {
		rule = ""
	}
	if err := nftIn(ctx, ns, chainScript("cut_"+target, hook, rule)); err != nil {
		return fmt.Errorf("sandbox fault: droplet %d %s: %w", id, target, err)
	}
	return nil
}

// BucketOutage starts (down = true) or ends an outage of the sandbox's S3
// endpoint: every packet to it is dropped in the router namespace, so
// every client (droplets, the CLI, the test) times out, as when the
// bucket's region is unreachable.
func BucketOutage(ctx context.Context, dir string, down bool) error {
	p, err := faultPlan(dir)
	if err != nil {
		return fmt.Errorf("sandbox fault: %w", err)
	}
	rule := ""
	if down {
		rule = fmt.Sprintf("ip daddr %s tcp dport %d drop", p.RouterIP(), s3Port)
	}
	if err := nftIn(ctx, p.RouterNS(), chainScript(outageChain, "input", rule)); err != nil {
		return fmt.Errorf("sandbox fault: bucket outage: %w", err)
	}
	return nil
}

// FaultList is what is broken in a sandbox now.
type FaultList struct {
	// BucketDown: the S3 endpoint is unreachable (BucketOutage).
	BucketDown bool `json:"bucket_down"`
	// Cuts lists each droplet's partitions, by droplet id.
	Cuts map[int][]string `json:"cuts"`
}

// Faults lists the faults in place, read from the namespaces' tables.
func Faults(ctx context.Context, dir string) (*FaultList, error) {
	p, err := faultPlan(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox fault: %w", err)
	}
	info, err := Status(dir)
	if err != nil {
		return nil, err
	}
	fl := &FaultList{Cuts: map[int][]string{}}
	chains, err := faultChains(ctx, p.RouterNS())
	if err != nil {
		return nil, err
	}
	fl.BucketDown = slices.Contains(chains, outageChain)
	for _, d := range info.Droplets {
		if !netnsExists(d.Namespace) {
			continue
		}
		chains, err := faultChains(ctx, d.Namespace)
		if err != nil {
			return nil, err
		}
		for _, c := range chains {
			if t, ok := strings.CutPrefix(c, "cut_"); ok {
				fl.Cuts[d.ID] = append(fl.Cuts[d.ID], t)
			}
		}
	}
	return fl, nil
}

// faultChains lists the chains of the fault table in ns (none without it).
func faultChains(ctx context.Context, ns string) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", faultTable)
	if err != nil {
		var re *extcmd.Error
		if errors.As(err, &re) && strings.Contains(re.Output, "No such file or directory") {
			return nil, nil
		}
		return nil, fmt.Errorf("sandbox fault: list %s: %w", ns, err)
	}
	var chains []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "chain" {
			chains = append(chains, f[1])
		}
	}
	slices.Sort(chains)
	return chains, nil
}

// Components Kill and Processes know: a droplet's processes by the names
// `sandbox logs` uses.
const (
	ProcPull        = "pull"         // dynia-pull (the sandbox's pid file)
	ProcHAProxy     = "haproxy"      // HAProxy's master (dynia-pull's run dir)
	ProcKeepalived  = "keepalived"   // keepalived's parent
	ProcWireGuardGo = "wireguard-go" // the mesh interface's daemon
	ProcDockerd     = "dockerd"      // the droplet's Docker Engine
	ProcContainerd  = "containerd"
	// ProcApp is every process of the droplet's app containers (docker
	// runtime, found by the droplet's cgroup parent) or the app process
	// dynia-pull's process runtime records.
	ProcApp = "app"
)

// ProcComponents are the valid components of Kill, in a stable order.
var ProcComponents = []string{ProcPull, ProcHAProxy, ProcKeepalived, ProcWireGuardGo, ProcDockerd, ProcContainerd, ProcApp}

// ParseProcComponent checks a component name (bad input for the CLI).
func ParseProcComponent(s string) (string, error) {
	if slices.Contains(ProcComponents, s) {
		return s, nil
	}
	return "", fmt.Errorf("want one of %s", strings.Join(ProcComponents, ", "))
}

// Proc is one running process: a pid and its start time (clock ticks since
// boot, /proc/PID/stat field 22) together name it; a pid alone is recycled.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Processes lists the live processes of droplet id, by component; a
// component that is not running has no entry (ProcApp may list several).
// Only processes inside the droplet's namespace (or its container cgroup)
// are listed: a stale pid file naming someone else's process is ignored.
func Processes(dir string, id int) (map[string][]Proc, error) {
	p, err := faultPlan(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox processes: %w", err)
	}
	ns, err := dropletNamespace(dir, p, id)
	if err != nil {
		return nil, fmt.Errorf("sandbox processes: %w", err)
	}
	nsIno, err := inode(filepath.Join("/run/netns", ns))
	if err != nil {
		return nil, fmt.Errorf("sandbox processes: %w", err)
	}
	ddir := dropletDir(dirOrDefault(dir), id)
	pidFiles := map[string]string{
		ProcPull:        filepath.Join(ddir, "pids", "pull.pid"),
		ProcDockerd:     filepath.Join(ddir, "pids", "dockerd.pid"),
		ProcContainerd:  filepath.Join(ddir, "pids", "containerd.pid"),
		ProcHAProxy:     filepath.Join(ddir, "run", "haproxy.pid"),
		ProcKeepalived:  filepath.Join(ddir, "run", "keepalived.pid"),
		ProcWireGuardGo: filepath.Join(ddir, "run", "wireguard-go.pid"),
	}
	out := map[string][]Proc{}
	for comp, f := range pidFiles {
		pid, start, _ := procstat.ReadPidFile(f) // malformed: no process to name
		if pid == 0 {
			continue
		}
		if ino, err := inode(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || ino != nsIno {
			continue // gone, or not the droplet's
		}
		out[comp] = []Proc{{pid, start}}
	}
	for _, pid := range appPids(ddir, ns, nsIno) {
		if start, err := procstat.StartTime(pid); err == nil {
			out[ProcApp] = append(out[ProcApp], Proc{pid, start})
		}
	}
	return out, nil
}

// appPids are the app's processes: the droplet's container processes (in
// its Docker cgroup parent), else the process runtime's records
// (<run dir>/app/r<N>.json, whose pid must be in the droplet's namespace).
func appPids(ddir, ns string, nsIno uint64) []int {
	var pids []int
	for _, pid := range dockerd.CgroupProcs(dockerCgroupParent(ns)) {
		if st := procstat.State(pid); st != "" && st != "Z" {
			pids = append(pids, pid)
		}
	}
	if len(pids) > 0 {
		return pids
	}
	recs, _ := filepath.Glob(filepath.Join(ddir, "run", "app", "r*.json"))
	for _, r := range recs {
		var rec struct {
			PID int `json:"pid"`
		}
		if readJSON(r, &rec) != nil || rec.PID <= 1 {
			continue
		}
		if ino, err := inode(fmt.Sprintf("/proc/%d/ns/net", rec.PID)); err == nil && ino == nsIno {
			if st := procstat.State(rec.PID); st != "" && st != "Z" {
				pids = append(pids, rec.PID)
			}
		}
	}
	return pids
}

// Kill SIGKILLs component's processes on droplet id (ProcApp: all the
// app's processes) and returns what it killed. A component that is not
// running is an error wrapping os.ErrNotExist.
func Kill(dir string, id int, component string) ([]Proc, error) {
	if _, err := ParseProcComponent(component); err != nil {
		return nil, fmt.Errorf("sandbox fault: component %q: %w", component, err)
	}
	procs, err := Processes(dir, id)
	if err != nil {
		return nil, err
	}
	victims := procs[component]
	if len(victims) == 0 {
		return nil, fmt.Errorf("sandbox fault: droplet %d runs no %s: %w", id, component, os.ErrNotExist)
	}
	var killed []Proc
	for _, v := range victims {
		// Checked again right before the signal: the pid must still be
		// the process listed.
		if !procstat.Alive(v.PID, v.Start) {
			continue
		}
		if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return killed, fmt.Errorf("sandbox fault: kill %s (pid %d) on droplet %d: %w", component, v.PID, id, err)
		}
		killed = append(killed, v)
	}
	if len(killed) == 0 {
		return nil, fmt.Errorf("sandbox fault: droplet %d: %s exited before the kill: %w", id, component, os.ErrNotExist)
	}
	return killed, nil
}

func inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func dirOrDefault(dir string) string {
	if dir == "" {
		return DefaultDir
	}
	return dir
}

// ResolveDroplet finds a droplet of the sandbox in dir by id, name or
// namespace.
func ResolveDroplet(dir, ref string) (int, error) {
	return resolveDroplet(dirOrDefault(dir), ref)
}
