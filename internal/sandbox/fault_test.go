package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/testutil"
)

func TestParseFaultNames(t *testing.T) {
	t.Parallel()
	for _, s := range CutTargets {
		if got, err := ParseCutTarget(s); err != nil || got != s {
			t.Errorf("ParseCutTarget(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range ProcComponents {
		if got, err := ParseProcComponent(s); err != nil || got != s {
			t.Errorf("ParseProcComponent(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "s3", "API", "peer"} {
		if _, err := ParseCutTarget(s); err == nil || !strings.Contains(err.Error(), "bucket, api, metadata, vrrp") {
			t.Errorf("ParseCutTarget(%q): %v, want an error listing the targets", s, err)
		}
	}
	if _, err := ParseProcComponent("nginx"); err == nil {
		t.Error("ParseProcComponent(nginx) accepted")
	}
}

// curlIn fetches url from droplet id's namespace ("" = the root namespace)
// and returns curl's exit code (0 = an HTTP answer of any status, 28 = a
// timeout: dropped packets).
func curlIn(t *testing.T, p plan, id int, url string) int {
	t.Helper()
	args := []string{"-s", "-o", "/dev/null", "--max-time", "1", url}
	name := "curl"
	if id != 0 {
		name, args = "ip", append([]string{"netns", "exec", p.DropletNS(id), "curl"}, args...)
	}
	err := exec.Command(name, args...).Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("curl %s: %v", url, err)
	return -1
}

// TestFaults: each partition target cuts exactly what it names, from one
// droplet only, silently (a timeout), and heals; faults add up and are
// listed; the bucket outage cuts every client; Kill kills the process a
// droplet's pid file names (and a supervised one comes back), never a
// process outside the droplet; a droplet with broken user-data runs
// nothing and its cloud-init log says why.
func TestFaults(t *testing.T) {
	testutil.NeedBinary(t, "nft")
	testutil.NeedBinary(t, "curl")
	ctx := context.Background()
	p, opts, info := upLab(t, testBinary(t), nil)
	dir := opts.Dir
	a := createDroplet(t, info, "fault-a", "")
	b := createDroplet(t, info, "fault-b", "")
	broken := createDroplet(t, info, "fault-broken", "#cloud-config\nwrite_files:\n  - path: /etc/dynia/pull.json\n    content: [unclosed\n")
	testutil.WaitFor(t, 15*time.Second, func() error {
		for _, id := range []int{a, b, broken} {
			if !netnsExists(p.DropletNS(id)) {
				return fmt.Errorf("droplet %d not up yet", id)
			}
		}
		return nil
	})
	router := p.RouterIP().String()
	urls := map[string]string{
		CutBucket:   "http://" + router + ":9000/",
		CutAPI:      "http://" + router + "/v2/regions",
		CutMetadata: "http://" + metadataIP + "/metadata/v1/id",
	}
	reach := func(id int) map[string]bool {
		out := map[string]bool{}
		for what, u := range urls {
			out[what] = curlIn(t, p, id, u) == 0
		}
		return out
	}
	all := map[string]bool{CutBucket: true, CutAPI: true, CutMetadata: true}
	for _, id := range []int{a, b} {
		if got := reach(id); !cmp.Equal(got, all) {
			t.Fatalf("droplet %d before any fault reaches %v", id, got)
		}
	}

	// One target at a time, on a: only that target is cut, only on a.
	for target := range urls {
		if err := Cut(ctx, dir, a, target); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{CutBucket: true, CutAPI: true, CutMetadata: true}
		want[target] = false
		if got := reach(a); !cmp.Equal(got, want) {
			t.Errorf("droplet a cut from %s reaches %v, want %v", target, got, want)
		}
		if code := curlIn(t, p, a, urls[target]); code != 28 {
			t.Errorf("droplet a cut from %s: curl exit %d, want 28 (a timeout: packets dropped, not refused)", target, code)
		}
		if got := reach(b); !cmp.Equal(got, all) {
			t.Errorf("droplet b, not cut, reaches %v", got)
		}
		if err := Heal(ctx, dir, a, target); err != nil {
			t.Fatal(err)
		}
		if got := reach(a); !cmp.Equal(got, all) {
			t.Errorf("droplet a healed from %s reaches %v", target, got)
		}
	}

	// Faults add up, are listed, and heal one by one or all at once.
	for _, target := range []string{CutBucket, CutVRRP, CutBucket} {
		if err := Cut(ctx, dir, a, target); err != nil {
			t.Fatal(err)
		}
	}
	if err := BucketOutage(ctx, dir, true); err != nil {
		t.Fatal(err)
	}
	fl, err := Faults(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&FaultList{BucketDown: true, Cuts: map[int][]string{a: {CutBucket, CutVRRP}}}); !cmp.Equal(fl, want) {
		t.Errorf("faults %+v, want %+v", fl, want)
	}
	for _, id := range []int{0, b} {
		if code := curlIn(t, p, id, urls[CutBucket]); code != 28 {
			t.Errorf("bucket outage: from droplet %d (0: the root namespace) curl exit %d, want 28 (a timeout)", id, code)
		}
	}
	if err := BucketOutage(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	if code := curlIn(t, p, 0, urls[CutBucket]); code != 0 {
		t.Errorf("bucket back: curl exit %d from the root namespace", code)
	}
	if err := Heal(ctx, dir, a, CutBucket); err != nil {
		t.Fatal(err)
	}
	if fl, _ := Faults(ctx, dir); !cmp.Equal(fl.Cuts, map[int][]string{a: {CutVRRP}}) || fl.BucketDown {
		t.Errorf("after healing the bucket cut and outage: %+v", fl)
	}
	if err := Heal(ctx, dir, a, ""); err != nil {
		t.Fatal(err)
	}
	if fl, _ := Faults(ctx, dir); len(fl.Cuts) != 0 || fl.BucketDown {
		t.Errorf("after healing everything: %+v", fl)
	}
	if err := Cut(ctx, dir, 999, CutAPI); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cut of a droplet that does not exist: %v", err)
	}

	// VRRP: adverts (IP protocol 112) reach b until b is cut from them.
	l := &fwLab{t: t, p: p, bin: testBinary(t), logs: t.TempDir(), ids: map[string]int{"a": a, "b": b}}
	lis := supervise(procSpec{Name: "fw-listen", NetNS: p.DropletNS(b), Path: l.bin,
		Args:    []string{"sandbox", "fw-listen", "--id", "b", "--ipproto", "112"},
		LogPath: filepath.Join(l.logs, "b.log"),
		// As the droplet's dynia-pull: Kill finds it by this pid file.
		PidPath: filepath.Join(dropletDir(dir, b), "pids", "pull.pid")}, testLogger(t))
	t.Cleanup(func() { lis.Stop(ctx, time.Second) })
	privB, _ := dropletStatus(t, dir, b)
	from := func(d Droplet) string { return d.PrivateIP }
	privA, _ := dropletStatus(t, dir, a)
	// reaches sends one advert from a to b: nil once b's listener logged it.
	reaches := func(when string) func() error {
		return func() error {
			n := nonce("vrrp")
			l.probe("a", "ipproto", "112", from(privB), n)
			if !l.received("b", "ipproto 112 from "+from(privA)+" "+n) {
				return fmt.Errorf("no VRRP from a at b %s", when)
			}
			return nil
		}
	}
	testutil.WaitFor(t, 10*time.Second, reaches("before the cut"))
	if err := Cut(ctx, dir, b, CutVRRP); err != nil {
		t.Fatal(err)
	}
	n := nonce("vrrp-cut")
	l.probe("a", "--count", "3", "ipproto", "112", from(privB), n)
	if code, _ := l.probe("a", "udp", from(privB)+":9", "still-flows"); code == probeEPERM {
		t.Error("a VRRP cut on b made a's UDP fail")
	}
	if err := Heal(ctx, dir, b, CutVRRP); err != nil {
		t.Fatal(err)
	}
	// The marker: an advert sent after the heal reaches b's listener on
	// the same path and socket as the ones sent during the cut, so once it
	// is logged, any of those that got through is logged before it.
	testutil.WaitFor(t, 10*time.Second, reaches("after the heal"))
	if l.received("b", "ipproto 112 from "+from(privA)+" "+n) {
		t.Error("a VRRP advert reached b while b was cut from VRRP")
	}

	// Kill: the pid file's process, in the droplet's namespace, and it
	// comes back (supervised); a pid file naming a process outside the
	// droplet names nothing.
	var before Proc
	testutil.WaitFor(t, 10*time.Second, func() error {
		procs, err := Processes(dir, b)
		if err != nil {
			return err
		}
		if len(procs[ProcPull]) != 1 {
			return fmt.Errorf("processes of b: %v", procs)
		}
		before = procs[ProcPull][0]
		return nil
	})
	killed, err := Kill(dir, b, ProcPull)
	if err != nil || !slices.Equal(killed, []Proc{before}) {
		t.Fatalf("Kill(b, pull) = %v, %v; want %v", killed, err, before)
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		procs, err := Processes(dir, b)
		if err != nil {
			return err
		}
		if len(procs[ProcPull]) != 1 || procs[ProcPull][0] == before {
			return fmt.Errorf("pull on b after the kill: %v (killed %v)", procs[ProcPull], before)
		}
		return nil
	})
	self := filepath.Join(dropletDir(dir, a), "run", "haproxy.pid")
	if err := os.MkdirAll(filepath.Dir(self), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Kill(dir, a, ProcHAProxy); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Kill of a pid file naming the test itself: %v; want no such process in the droplet", err)
	}

	// Broken user-data: the droplet has its network, runs nothing, and its
	// cloud-init log names the YAML error.
	if _, err := os.Stat(filepath.Join(dropletDir(dir, broken), "pull.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a droplet with broken user-data has a pull.json (%v)", err)
	}
	if procs, err := Processes(dir, broken); err != nil || len(procs) != 0 {
		t.Errorf("a droplet with broken user-data runs %v (%v)", procs, err)
	}
	rc, err := Logs(dir, strconv.Itoa(broken), "cloud-init")
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	_, _ = io.Copy(&log, rc)
	rc.Close()
	if !strings.Contains(log.String(), "user-data not applied, nothing started: boot: parse user-data: error converting YAML to JSON: yaml: line 4") {
		t.Errorf("cloud-init log of the broken droplet:\n%s", log.String())
	}
}
