package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetNS runs fn on an OS thread switched into the named network
// namespace (/run/netns/<ns>, as made by `ip netns add`), then switches the
// thread back. Sockets fn creates stay in that namespace for their whole
// life, so a test can serve from inside a node namespace (a listener made
// here accepts connections to the node's addresses) while its goroutines
// run anywhere. Needs root.
func InNetNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer func() { _ = orig.Close() }() // read-only handle
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer func() { _ = target.Close() }() // read-only handle
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: setns: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime then ends it with this
		// goroutine instead of reusing a thread in the wrong namespace.
		return fmt.Errorf("netns %s: switching back: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listen opens a TCP listener inside the node's namespace (see InNetNS).
func (n *NetNode) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(n.NS, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Dial connects from inside the node's namespace (see InNetNS): the socket
// belongs to the namespace it was created in, so addr may be the node's own
// loopback.
func (n *NetNode) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(n.NS, func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a UDP socket inside the node's namespace (see InNetNS).
func (n *NetNode) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := InNetNS(n.NS, func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}
