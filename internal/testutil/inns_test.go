package testutil

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestInNetNS: a listener made with NetNode.Listen lives in the node's
// namespace: it answers on the node's address from the root namespace, and
// the same loopback port in the root namespace stays free.
func TestInNetNS(t *testing.T) {
	lab := NewNetLab(t, 1)
	node := lab.Nodes[0]
	l, err := node.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("from the node"))
			_ = c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())

	c, err := net.DialTimeout("tcp", net.JoinHostPort(node.Addr.String(), port), 10*time.Second)
	if err != nil {
		t.Fatalf("dial the node's listener from the root namespace: %v", err)
	}
	got, _ := io.ReadAll(c)
	_ = c.Close()
	if string(got) != "from the node" {
		t.Fatalf("read %q", got)
	}
	// The root namespace's loopback does not have it: the socket is the node's.
	root, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("port %s taken in the root namespace too: %v", port, err)
	}
	_ = root.Close()

	if err := InNetNS("dynia-no-such-ns", func() error { return nil }); err == nil {
		t.Fatal("InNetNS into a missing namespace succeeded")
	}
}

// TestStartPebbleLoopback: Pebble starts on free loopback ports and hands
// out its issuance root.
func TestStartPebbleLoopback(t *testing.T) {
	p := StartPebble(t, PebbleOptions{HTTPPort: 5002, TLSPort: 5001})
	if !strings.HasPrefix(p.DirectoryURL, "https://127.0.0.1:") {
		t.Fatalf("directory %s", p.DirectoryURL)
	}
	if root := p.IssuerRootPEM(t); !strings.Contains(string(root), "BEGIN CERTIFICATE") {
		t.Fatalf("issuance root %q", root)
	}
	if _, err := os.Stat(p.TLSRootFile); err != nil {
		t.Fatal(err)
	}
}
