package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/testutil"
)

// inNetns runs f on an OS thread moved into network namespace ns: the
// interface lookups, ip(8) commands (forked from that thread) and UAPI
// calls of a Device see that namespace, as in dynia-pull running there.
// The thread returns to its own namespace afterwards; if it cannot, it
// stays locked and dies with the goroutine.
func inNetns(t *testing.T, ns string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = f()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// startWireGuardGo runs wireguard-go for name in node's namespace until
// the test ends and returns its process.
func startWireGuardGo(t *testing.T, node *testutil.NetNode, bin, name string) *os.Process {
	t.Helper()
	cmd := node.Command(bin, "-f", name)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.Remove("/var/run/wireguard/" + name + ".sock") // left behind by a SIGKILL
	})
	return cmd.Process
}

// TestDeviceWireGuardGo drives Device against the real wireguard-go in two
// namespaces: first apply sets everything, a second changes nothing, the
// peers handshake, a removed peer goes without touching the rest, and a
// restarted wireguard-go (a new, empty interface) is configured again.
func TestDeviceWireGuardGo(t *testing.T) {
	bin := testutil.NeedBinary(t, "wireguard-go")
	testutil.NeedBinary(t, "ip")
	lab := testutil.NewNetLab(t, 2)
	var devs [2]*Device
	var cfgs [2]Config
	var procs [2]*os.Process
	for i, n := range lab.Nodes {
		name := fmt.Sprintf("%sw%d", lab.ID, i)
		procs[i] = startWireGuardGo(t, n, bin, name)
		devs[i] = &Device{Name: name, Userspace: true, Wait: 10 * time.Second}
		t.Cleanup(func() { devs[i].Close() })
		addr, err := Address(n.Addr.String())
		if err != nil {
			t.Fatal(err)
		}
		cfgs[i] = Config{PrivateKey: mustKey(t), ListenPort: 51820, Address: addr}
	}
	for i := range cfgs {
		o := cfgs[1-i]
		cfgs[i].Peers = []Peer{{PublicKey: o.PrivateKey.PublicKey(), Address: o.Address,
			Endpoint: netip.AddrPortFrom(lab.Nodes[1-i].Addr, 51820)}}
	}
	ctx := context.Background()
	apply := func(i int, c Config) Changes {
		t.Helper()
		var ch Changes
		if err := inNetns(t, lab.Nodes[i].NS, func() (err error) { ch, err = devs[i].Apply(ctx, c); return err }); err != nil {
			t.Fatalf("node %d: Apply: %v", i, err)
		}
		return ch
	}
	ready := func(i int) (ok bool) {
		_ = inNetns(t, lab.Nodes[i].NS, func() error { ok = devs[i].Ready(); return nil })
		return ok
	}
	for i := range devs {
		if ch := apply(i, cfgs[i]); !ch.Keyed || !ch.Addressed || !ch.LinkUp || ch.Added != 1 || ch.Created {
			t.Errorf("node %d first apply: %+v", i, ch)
		}
		if ch := apply(i, cfgs[i]); ch.Any() {
			t.Errorf("node %d second apply changed %+v", i, ch)
		}
		if !ready(i) {
			t.Errorf("node %d not ready after apply", i)
		}
	}

	// Traffic over the mesh makes both ends handshake.
	handshake := func(i int) error {
		var peers []wgtypes.Peer
		err := inNetns(t, lab.Nodes[i].NS, func() (err error) {
			c, err := net.Dial("udp", netip.AddrPortFrom(cfgs[1-i].Address, 9).String())
			if err != nil {
				return err
			}
			_, _ = c.Write([]byte("x")) // a lost datagram is sent again next round
			c.Close()
			peers, err = devs[i].Peers()
			return err
		})
		if err != nil {
			return err
		}
		if len(peers) != 1 || peers[0].LastHandshakeTime.IsZero() {
			return fmt.Errorf("node %d: no handshake yet: %+v", i, peers)
		}
		return nil
	}
	testutil.WaitFor(t, 30*time.Second, func() error { return errors.Join(handshake(0), handshake(1)) })

	// Removing the only peer: one removal, the interface stays.
	noPeers := cfgs[0]
	noPeers.Peers = nil
	if ch := apply(0, noPeers); ch.Removed != 1 || ch.Added+ch.Updated != 0 || ch.Relinked() || ch.Keyed {
		t.Errorf("remove: %+v", ch)
	}
	if !ready(0) {
		t.Error("removing a peer took the interface down")
	}

	// wireguard-go dies with its interface; a new one starts empty and is
	// configured again, address first, then up.
	_ = procs[1].Kill()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if ready(1) {
			return errors.New("interface still there")
		}
		return nil
	})
	var err error
	if err = inNetns(t, lab.Nodes[1].NS, func() error {
		d := &Device{Name: devs[1].Name, Userspace: true, Wait: 100 * time.Millisecond}
		_, err := d.Apply(ctx, cfgs[1])
		return err
	}); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Apply without wireguard-go: %v, want ErrNoInterface", err)
	}
	_ = os.Remove("/var/run/wireguard/" + devs[1].Name + ".sock")
	startWireGuardGo(t, lab.Nodes[1], bin, devs[1].Name)
	if ch := apply(1, cfgs[1]); !ch.Relinked() || !ch.Keyed || ch.Added != 1 {
		t.Errorf("after restart: %+v", ch)
	}
	if !ready(1) {
		t.Error("node 1 not ready after restart")
	}
}
