package cli

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/testutil"
)

var dyniaBin struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// dyniaBinary is the built dynia: $DYNIA_BIN_DIR/dynia under `make test`,
// else built once into a temporary directory.
func dyniaBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("DYNIA_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, "dynia")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("DYNIA_BIN_DIR has no dynia: %v", err)
		}
		return p
	}
	dyniaBin.once.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			dyniaBin.err = err
			return
		}
		// Not t.TempDir: the binary outlives the first test that builds it.
		if dyniaBin.dir, dyniaBin.err = os.MkdirTemp("", "dynia-cli-bin"); dyniaBin.err != nil {
			return
		}
		p := filepath.Join(dyniaBin.dir, "dynia")
		cmd := exec.Command(goCmd, "build", "-o", p, "github.com/dynia/dynia/cmd/dynia")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			dyniaBin.err = &buildError{err, out}
			return
		}
		dyniaBin.path = p
	})
	if dyniaBin.err != nil {
		if testutil.Required() {
			t.Fatalf("build dynia: %v", dyniaBin.err)
		}
		t.Skipf("build dynia: %v", dyniaBin.err)
	}
	return dyniaBin.path
}

type buildError struct {
	err error
	out []byte
}

func (b *buildError) Error() string { return b.err.Error() + "\n" + string(b.out) }

// TestMain removes the binary dyniaBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if dyniaBin.dir != "" {
		_ = os.RemoveAll(dyniaBin.dir)
	}
	os.Exit(code)
}

// proc is a dynia subprocess; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan struct{}
}

// startDynia starts the built binary against the environment, with the same
// config file and environment variables run() gives the in-process CLI.
func (e *testEnv) startDynia(args ...string) *proc {
	e.t.Helper()
	p := &proc{cmd: exec.Command(dyniaBinary(e.t), append([]string{"--config", e.cfg}, args...)...), out: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.t.TempDir()}
	for k, v := range e.env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// killWhen SIGKILLs the process once cond holds (polled, bounded), and
// fails if the process ended first.
func (e *testEnv) killWhen(p *proc, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case <-p.done:
			e.t.Fatalf("dynia ended before %s:\n%s", what, p.out)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s within a minute:\n%s", what, p.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		e.t.Fatalf("kill dynia: %v", err)
	}
	<-p.done
	e.t.Logf("killed dynia at %s; its output:\n%s", what, p.out)
}

func (e *testEnv) taggedDroplets(name string) []dosim.Droplet {
	var out []dosim.Droplet
	for _, d := range e.sim.Droplets() {
		if slices.Contains(d.Tags, cloud.ClusterTag(name)) {
			out = append(out, d)
		}
	}
	return out
}

// holdOpen is how long the simulator holds the request the CLI is killed
// in. The server notices a killed client of a POST only when the delay
// ends (it has not read the body), so the delay is short, and ends in an
// error rather than in creating a droplet behind the test's back.
const holdOpen = 15 * time.Second

// TestKilledAddResumes: SIGKILL the real binary in the middle of `node add`
// at two points, and re-run the same command: each ends with exactly the
// nodes asked for, no orphan or duplicate droplet, state and DO consistent.
//
// The simulator holds one request open at the chosen point, so the kill
// lands there every run instead of racing the CLI.
func TestKilledAddResumes(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("killed")()
	e.mustRun("node", "create-ha", "--name", "killed", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	dyniaBinary(t) // build before anything is timed

	// 1. Killed between the two droplet creates: the first droplet exists,
	// the second was never made, the state has neither id.
	e.sim.InjectFault(dosim.Fault{Method: "POST", PathPrefix: "/v2/droplets", Latency: holdOpen, Status: http.StatusServiceUnavailable, Every: 2})
	before := len(e.sim.Calls())
	p := e.startDynia("node", "add", "--name", "killed", "--count", "2")
	e.killWhen(p, "the first POST /v2/droplets", func() bool {
		for _, c := range e.sim.Calls()[before:] {
			if c.Method == "POST" && c.Path == "/v2/droplets" && c.Status/100 == 2 {
				return true
			}
		}
		return false
	})
	e.sim.ClearFaults()
	st := e.state("killed")
	if len(st.Nodes) != 3 || len(e.taggedDroplets("killed")) != 2 {
		t.Fatalf("after the kill: %d nodes in the state, %d droplets; want 3 and 2", len(st.Nodes), len(e.taggedDroplets("killed")))
	}
	r := e.mustRun("node", "add", "--name", "killed", "--count", "2")
	if !strings.Contains(r.stderr, "resuming") {
		t.Errorf("re-run does not say it resumes:\n%s", r.stderr)
	}
	st = e.consistent("killed")
	if len(st.Nodes) != 3 || len(e.sim.Droplets()) != 3 {
		t.Fatalf("after re-running add: %d nodes, %d droplets; want 3 and 3", len(st.Nodes), len(e.sim.Droplets()))
	}

	// 2. Killed after the droplets were created and recorded, while it
	// waits for them to become active: the state still says provisioning.
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Latency: holdOpen, Status: http.StatusServiceUnavailable})
	p = e.startDynia("node", "add", "--name", "killed", "--count", "2")
	e.killWhen(p, "both droplets recorded in the state", func() bool {
		st := e.state("killed")
		recorded := 0
		for _, n := range st.Nodes {
			if n.Lifecycle == cluster.Provisioning && n.DropletID != 0 {
				recorded++
			}
		}
		return recorded == 2
	})
	e.sim.ClearFaults()
	if n := len(e.taggedDroplets("killed")); n != 5 {
		t.Fatalf("after the second kill: %d droplets, want 5", n)
	}
	r = e.mustRun("node", "add", "--name", "killed", "--count", "2")
	if !strings.Contains(r.stderr, "resuming") {
		t.Errorf("re-run does not say it resumes:\n%s", r.stderr)
	}
	st = e.consistent("killed")
	if len(st.Nodes) != 5 || len(e.sim.Droplets()) != 5 {
		t.Fatalf("after re-running add: %d nodes, %d droplets; want 5 and 5", len(st.Nodes), len(e.sim.Droplets()))
	}
	for _, n := range st.Nodes {
		if n.Lifecycle != cluster.Ready {
			t.Errorf("node %s is %s", n.ID, n.Lifecycle)
		}
	}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	// Both journals were finished by the re-runs: a new add adds new nodes.
	if left, _ := filepath.Glob(filepath.Join(e.env["DYNIA_JOURNAL_DIR"], "*")); len(left) != 0 {
		t.Errorf("add journals left: %v", left)
	}
}
