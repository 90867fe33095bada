package pull_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// TestRestartLeavesDaemonsServing is `systemctl restart dynia-pull` (an
// upgrade) on the MASTER: SIGTERM stops dynia-pull but leaves its haproxy,
// keepalived and wireguard-go (the mesh VRRP runs over) running, so the
// node keeps serving and no VRRP transition happens; the next dynia-pull
// adopts the same processes (same pids), keeps the mesh peers it finds,
// and applies and reloads the following state change through them.
func TestRestartLeavesDaemonsServing(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, 3, 2, time.Second)
	a, b, c := e.ids[0], e.ids[1], e.ids[2]
	e.setLifecycle(c, cluster.Provisioning)
	e.converge(e.put(), a, b)

	master := -1
	testutil.WaitFor(t, 30*time.Second, func() error {
		master = -1
		for i := 0; i < e.pulled; i++ {
			st, err := e.status(i)
			if err != nil {
				return err
			}
			switch {
			case st.VRRPState == report.VRRPMaster && master == -1:
				master = i
			case st.VRRPState != report.VRRPBackup:
				return fmt.Errorf("node %s is %s", e.ids[i], st.VRRPState)
			}
		}
		if master == -1 {
			return fmt.Errorf("no MASTER")
		}
		return nil
	})
	peer := 1 - master
	id := e.ids[master]
	hp, ka, wgp := e.daemonPid(master, "haproxy"), e.daemonPid(master, "keepalived"), e.daemonPid(master, "wireguard-go")
	if hp == 0 || ka == 0 || wgp == 0 {
		t.Fatalf("MASTER %s: haproxy pid %d, keepalived pid %d, wireguard-go pid %d", id, hp, ka, wgp)
	}
	// dynia-pull logs every VRRP transition keepalived notifies.
	transitions := func(logName string) int {
		b, _ := os.ReadFile(filepath.Join(e.dir, logName+".log"))
		return strings.Count(string(b), `"msg":"vrrp state"`)
	}
	peerBefore := transitions("pull-" + e.ids[peer])

	// Requests through the MASTER's HAProxy from before the stop until
	// after the first change applied by the new dynia-pull: none fails.
	var ok, failed atomic.Int64
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < 100000; n++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			if _, err := e.serves(master, 1); err != nil {
				failed.Add(1)
				t.Logf("request to %s failed: %v", id, err)
			} else {
				ok.Add(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	e.stop(e.pids[master])
	stoppedLog, _ := os.ReadFile(filepath.Join(e.dir, "pull-"+id+".log"))
	for _, name := range []string{"haproxy", "keepalived", "wireguard-go"} {
		if !strings.Contains(string(stoppedLog), `"component":"`+name+`","pid":`) ||
			!strings.Contains(string(stoppedLog), "leaving the daemon running") {
			t.Errorf("dynia-pull did not log leaving %s running:\n%s", name, tail(string(stoppedLog), 10))
		}
	}
	// Without dynia-pull for a while: still serving, same daemons.
	time.Sleep(3 * time.Second)
	for name, pid := range map[string]int{"haproxy": hp, "keepalived": ka, "wireguard-go": wgp} {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s pid %d gone after dynia-pull stopped: %v", name, pid, err)
		}
	}
	if got, err := e.serves(master, 3); err != nil || got[a] == 0 || got[b] == 0 {
		t.Errorf("MASTER %s without dynia-pull serves %v, %v; want %s and %s", id, got, err, a, b)
	}

	// The next dynia-pull adopts them.
	cfg := filepath.Join(e.dir, id, "pull.json")
	e.pids[master] = e.start("pull-"+id+"-2", e.lab.Nodes[master].Command(buildPull(t), "run", "--config", cfg))
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := e.status(master)
		if err != nil {
			return err
		}
		if st.AppliedGeneration != e.state.Generation || st.VRRPState != report.VRRPMaster {
			return fmt.Errorf("restarted %s: applied %d (want %d), vrrp %s (want MASTER, restored)",
				id, st.AppliedGeneration, e.state.Generation, st.VRRPState)
		}
		return nil
	})
	if nhp, nka, nwg := e.daemonPid(master, "haproxy"), e.daemonPid(master, "keepalived"), e.daemonPid(master, "wireguard-go"); nhp != hp || nka != ka || nwg != wgp {
		t.Errorf("after restart haproxy pid %d (was %d), keepalived pid %d (was %d), wireguard-go pid %d (was %d): not adopted",
			nhp, hp, nka, ka, nwg, wgp)
	}
	newLog, _ := os.ReadFile(filepath.Join(e.dir, "pull-"+id+"-2.log"))
	if n := strings.Count(string(newLog), "adopted running daemon"); n != 3 {
		t.Errorf("new dynia-pull logged %d adoptions, want 3 (haproxy, keepalived, wireguard-go):\n%s", n, tail(string(newLog), 20))
	}
	// It kept the mesh peer it found (and re-read its key) instead of
	// dropping it while it had no key learned.
	if strings.Contains(string(newLog), `"peers_removed":1`) {
		t.Errorf("the restarted dynia-pull removed a mesh peer:\n%s", tail(string(newLog), 20))
	}

	// A state change is applied and reloaded through the adopted daemons.
	e.setLifecycle(c, cluster.Ready)
	e.converge(e.put(), a, b, c)
	close(stopLoad)
	wg.Wait()
	if nhp, nka := e.daemonPid(master, "haproxy"), e.daemonPid(master, "keepalived"); nhp != hp || nka != ka {
		t.Errorf("after a change haproxy pid %d (was %d), keepalived pid %d (was %d): restarted instead of reloaded", nhp, hp, nka, ka)
	}
	if n := transitions("pull-" + e.ids[peer]); n != peerBefore {
		t.Errorf("peer %s logged %d VRRP transitions during the restart, want none", e.ids[peer], n-peerBefore)
	}
	if st, err := e.status(peer); err != nil || st.VRRPState != report.VRRPBackup {
		t.Errorf("peer %s: %+v %v; want BACKUP", e.ids[peer], st, err)
	}
	t.Logf("restart of MASTER %s's dynia-pull: %d requests through its haproxy, %d failed; haproxy %d, keepalived %d and wireguard-go %d adopted",
		id, ok.Load()+failed.Load(), failed.Load(), hp, ka, wgp)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
}
