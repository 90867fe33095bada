package sandbox

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// testCommands are the test binary's own `sandbox <cmd>` helpers (see
// TestMain): small programs the firewall test starts inside droplet
// namespaces with `ip netns exec`.
var testCommands = map[string]func(args []string) int{
	"fw-listen": fwListen,
	"probe":     fwProbe,
}

// fwListen answers on TCP and UDP ports and logs every TCP connection, UDP
// datagram and raw IP packet of one protocol it receives, one line each on
// stdout: "tcp PORT from IP", "udp PORT from IP PAYLOAD", "ipproto N from
// IP PAYLOAD". TCP gets "ID\n"; UDP gets "ID PAYLOAD" back.
func fwListen(args []string) int {
	fs := flag.NewFlagSet("fw-listen", flag.ContinueOnError)
	id := fs.String("id", "", "")
	tcp := fs.String("tcp", "", "comma-separated ports")
	udp := fs.String("udp", "", "comma-separated ports")
	proto := fs.Int("ipproto", 0, "IP protocol to log (0: none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var mu sync.Mutex
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	for _, p := range splitList(*tcp) {
		ln, err := net.Listen("tcp4", ":"+p)
		if err != nil {
			return fail(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				logf("tcp %s from %s", p, hostOnly(c.RemoteAddr()))
				fmt.Fprintf(c, "%s\n", *id)
				c.Close()
			}
		}()
	}
	for _, p := range splitList(*udp) {
		pc, err := net.ListenPacket("udp4", ":"+p)
		if err != nil {
			return fail(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				logf("udp %s from %s %s", p, hostOnly(from), buf[:n])
				_, _ = pc.WriteTo([]byte(*id+" "+string(buf[:n])), from)
			}
		}()
	}
	if *proto != 0 {
		pc, err := net.ListenPacket("ip4:"+strconv.Itoa(*proto), "0.0.0.0")
		if err != nil {
			return fail(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				// A VRRP-shaped header (8 bytes), then the probe's nonce.
				logf("ipproto %d from %s %s", *proto, hostOnly(from), buf[min(8, n):n])
			}
		}()
	}
	logf("listening")
	select {}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func hostOnly(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Probe outcomes, as exit codes of `sandbox probe`.
const (
	probeAnswered    = 0
	probeTimeout     = 3 // silence: what a cloud firewall's drop looks like
	probeRefused     = 4 // RST or ICMP port unreachable
	probeUnreachable = 5
	probeEPERM       = 6 // the sender's own netfilter dropped it
)

// fwProbe sends one thing and reports what came back:
//
//	probe tcp IP:PORT           connect, print the first line
//	probe udp IP:PORT PAYLOAD   send, print the answer
//	probe icmp IP               echo request, print "echo reply"
//	probe ipproto N IP PAYLOAD  send COUNT raw packets of protocol N (no answer)
func fwProbe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 1500*time.Millisecond, "")
	count := fs.Int("count", 1, "ipproto: packets to send")
	interval := fs.Duration("interval", 300*time.Millisecond, "ipproto: between packets")
	if err := fs.Parse(args); err != nil || fs.NArg() < 2 {
		return 2
	}
	a := fs.Args()
	deadline := time.Now().Add(*timeout)
	var answer string
	var err error
	switch a[0] {
	case "tcp":
		var c net.Conn
		if c, err = net.DialTimeout("tcp4", a[1], *timeout); err == nil {
			defer c.Close()
			_ = c.SetDeadline(deadline)
			answer, err = bufio.NewReader(c).ReadString('\n')
		}
	case "udp":
		var c net.Conn
		if c, err = net.Dial("udp4", a[1]); err == nil {
			defer c.Close()
			_ = c.SetDeadline(deadline)
			if _, err = c.Write([]byte(a[2])); err == nil {
				buf := make([]byte, 2048)
				var n int
				n, err = c.Read(buf)
				answer = string(buf[:n])
			}
		}
	case "icmp":
		answer, err = icmpEcho(a[1], deadline)
	case "ipproto":
		var c net.Conn
		if c, err = net.Dial("ip4:"+a[1], a[2]); err == nil {
			defer c.Close()
			pkt := append([]byte{0x21, 51, 100, 0, 0, 1, 0, 0}, a[3]...)
			for i := 0; i < *count && err == nil; i++ {
				if i > 0 {
					time.Sleep(*interval)
				}
				_, err = c.Write(pkt)
			}
			answer = "sent"
		}
	default:
		return 2
	}
	var nerr net.Error
	switch {
	case err == nil:
		fmt.Println(strings.TrimSpace(answer))
		return probeAnswered
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Println("refused")
		return probeRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		fmt.Println("unreachable")
		return probeUnreachable
	case errors.Is(err, syscall.EPERM):
		fmt.Println("eperm")
		return probeEPERM
	case errors.As(err, &nerr) && nerr.Timeout():
		fmt.Println("timeout")
		return probeTimeout
	}
	fmt.Println(err)
	return 1
}

// icmpEcho sends one ICMP echo request and waits for its reply.
func icmpEcho(to string, deadline time.Time) (string, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	dst, err := net.ResolveIPAddr("ip4", to)
	if err != nil {
		return "", err
	}
	id := uint16(os.Getpid())
	msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'd', 'y', 'n', 'i', 'a'}
	var sum uint32
	for i := 0; i+1 < len(msg); i += 2 {
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	sum += uint32(msg[len(msg)-1]) << 8 // odd length
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
	if _, err := c.WriteTo(msg, dst); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return "", err
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && hostOnly(from) == dst.IP.String() {
			return "echo reply", nil
		}
	}
}

// fwLab is the firewall test's view of a sandbox: droplets by name, with
// a listener in each.
type fwLab struct {
	t    *testing.T
	p    plan
	bin  string
	logs string // listener logs
	ids  map[string]int
	pub  map[string]string
	priv map[string]string
}

// probe runs `sandbox probe ARGS` in a droplet's namespace (from "" = the
// root namespace, the internet) and returns its outcome and output.
func (l *fwLab) probe(from string, args ...string) (int, string) {
	l.t.Helper()
	argv := append([]string{"sandbox", "probe"}, args...)
	name := l.bin
	if from != "" {
		name, argv = "ip", append([]string{"netns", "exec", l.p.DropletNS(l.ids[from]), l.bin}, argv...)
	}
	out, err := exec.Command(name, argv...).Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("probe %v: %v", args, err)
	}
	return code, strings.TrimSpace(string(out))
}

// want asserts one probe's outcome (and, when answered, its answer).
func (l *fwLab) want(outcome int, answer, from string, args ...string) {
	l.t.Helper()
	code, out := l.probe(from, args...)
	if code != outcome || (outcome == probeAnswered && out != answer) {
		l.t.Errorf("from %s: probe %s: exit %d %q, want exit %d %q", orInternet(from), strings.Join(args, " "), code, out, outcome, answer)
	}
}

// waitFor retries a probe until it has the wanted outcome (a change applied).
func (l *fwLab) waitFor(outcome int, from string, args ...string) {
	l.t.Helper()
	testutil.WaitFor(l.t, 20*time.Second, func() error {
		if code, out := l.probe(from, args...); code != outcome {
			return fmt.Errorf("from %s: probe %s: exit %d %q, want exit %d", orInternet(from), strings.Join(args, " "), code, out, outcome)
		}
		return nil
	})
}

func orInternet(from string) string {
	if from == "" {
		return "the internet (root namespace)"
	}
	return from
}

// received reports whether droplet to's listener logged line.
func (l *fwLab) received(to, line string) bool {
	b, _ := os.ReadFile(filepath.Join(l.logs, to+".log"))
	return strings.Contains(string(b), "\n"+line+"\n") || strings.HasPrefix(string(b), line+"\n")
}

// nonce makes every probe's payload unique, so a listener's log tells which
// probe arrived.
func nonce(what string) string {
	return fmt.Sprintf("%s-%d", what, time.Now().UnixNano())
}

// TestFirewallEnforcement runs a sandbox with enforcement on and checks,
// with real traffic, that a DO cloud firewall like dynia's (on the cluster
// tag) is applied as DO applies it: on the public and the VPC side, in and
// out, stateful, TCP/UDP/ICMP only, silent drops, changes through the API
// taking effect, and an untagged droplet unfiltered.
func TestFirewallEnforcement(t *testing.T) {
	testutil.NeedBinary(t, "nft")
	ctx := context.Background()
	// The test binary stands in for dynia-pull: the droplets are bare.
	p, opts, info := upLab(t, testBinary(t), func(o *Options) { o.Firewalls = FirewallsEnforce })
	dir := opts.Dir
	if info.Firewalls != FirewallsEnforce {
		t.Fatalf("status says firewalls %q, want enforce", info.Firewalls)
	}
	l := &fwLab{t: t, p: p, bin: testBinary(t), logs: t.TempDir(),
		ids: map[string]int{}, pub: map[string]string{}, priv: map[string]string{}}
	const tag = "dynia:cluster:x"
	for _, n := range []string{"a", "b", "c"} {
		var tags []string
		if n != "c" {
			tags = []string{tag}
		}
		l.ids[n] = createDroplet(t, info, "fw-"+n, "", tags...)
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		for n, id := range l.ids {
			d, ok := dropletStatus(t, dir, id)
			if !ok || !netnsExists(p.DropletNS(id)) {
				return fmt.Errorf("droplet %s (%d) not up yet", n, id)
			}
			l.pub[n], l.priv[n] = d.PublicIP, d.PrivateIP
		}
		return nil
	})
	for n, id := range l.ids {
		s := supervise(procSpec{Name: "fw-listen", NetNS: p.DropletNS(id), Path: l.bin,
			Args:    []string{"sandbox", "fw-listen", "--id", n, "--tcp", "80,22,8080", "--udp", "5000", "--ipproto", "112"},
			LogPath: filepath.Join(l.logs, n+".log"), PidPath: filepath.Join(l.logs, n+".pid")}, testLogger(t))
		t.Cleanup(func() { s.Stop(ctx, time.Second) })
	}
	// The internet's own listener, for connections the droplets open.
	host := p.HostIP().String()
	ln, err := net.Listen("tcp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "internet")
			c.Close()
		}
	}()
	internet := ln.Addr().String()

	// No firewall yet: everything passes, VRRP included (the probes work).
	for _, n := range []string{"a", "b", "c"} {
		l.waitFor(probeAnswered, "", "tcp", l.pub[n]+":22")
	}
	pre := nonce("vrrp")
	testutil.WaitFor(t, 10*time.Second, func() error {
		l.probe("a", "ipproto", "112", l.priv["b"], pre)
		if !l.received("b", "ipproto 112 from "+l.priv["a"]+" "+pre) {
			return fmt.Errorf("no VRRP from a at b before any firewall")
		}
		return nil
	})

	// dynia's firewall (internal/cloud firewallRequest), on the tag, with
	// an admin CIDR that is not the internet's address.
	anywhere := []string{"0.0.0.0/0", "::/0"}
	inbound := func(admin string) []map[string]any {
		return []map[string]any{
			{"protocol": "tcp", "ports": "80", "sources": map[string]any{"addresses": anywhere}},
			{"protocol": "tcp", "ports": "443", "sources": map[string]any{"addresses": anywhere}},
			{"protocol": "tcp", "ports": "0", "sources": map[string]any{"tags": []string{tag}}},
			{"protocol": "udp", "ports": "0", "sources": map[string]any{"tags": []string{tag}}},
			{"protocol": "icmp", "sources": map[string]any{"addresses": anywhere}},
			{"protocol": "tcp", "ports": "22", "sources": map[string]any{"addresses": []string{admin}}},
		}
	}
	outbound := []map[string]any{
		{"protocol": "tcp", "ports": "0", "destinations": map[string]any{"addresses": anywhere}},
		{"protocol": "udp", "ports": "0", "destinations": map[string]any{"addresses": anywhere}},
		{"protocol": "icmp", "destinations": map[string]any{"addresses": anywhere}},
	}
	fwBody := func(in, out []map[string]any) map[string]any {
		return map[string]any{"name": "dynia-x", "inbound_rules": in, "outbound_rules": out, "tags": []string{tag}}
	}
	var fw struct {
		Firewall struct {
			ID string `json:"id"`
		} `json:"firewall"`
	}
	api(t, info, "POST", "/v2/firewalls", fwBody(inbound("192.0.2.0/24"), outbound), &fw)
	fwPath := "/v2/firewalls/" + fw.Firewall.ID
	l.waitFor(probeTimeout, "", "tcp", l.pub["a"]+":22")

	// The internet: 80 answers, 22 (not from the admin CIDR) and 8080 are
	// silently dropped; ICMP passes; the untagged droplet is unfiltered.
	l.want(probeAnswered, "a", "", "tcp", l.pub["a"]+":80")
	l.want(probeAnswered, "b", "", "tcp", l.pub["b"]+":80")
	l.want(probeTimeout, "", "", "tcp", l.pub["a"]+":22")
	l.want(probeTimeout, "", "", "tcp", l.pub["b"]+":8080")
	l.want(probeAnswered, "echo reply", "", "icmp", l.pub["a"])
	l.want(probeAnswered, "c", "", "tcp", l.pub["c"]+":22")
	// Between the tagged droplets, over the VPC and the public side: TCP
	// and UDP pass.
	l.want(probeAnswered, "b", "a", "tcp", l.priv["b"]+":8080")
	l.want(probeAnswered, "a", "b", "tcp", l.pub["a"]+":22")
	udp := nonce("udp")
	l.want(probeAnswered, "b "+udp, "a", "udp", l.priv["b"]+":5000", udp)
	// From the untagged droplet, same VPC: TCP 22 and UDP are dropped
	// (the packet never reaches the listener), 80 and ICMP pass.
	udp = nonce("udp")
	l.want(probeTimeout, "", "c", "udp", l.priv["a"]+":5000", udp)
	if l.received("a", "udp 5000 from "+l.priv["c"]+" "+udp) {
		t.Errorf("a received the UDP datagram from untagged c")
	}
	l.want(probeTimeout, "", "c", "tcp", l.priv["a"]+":22")
	l.want(probeAnswered, "a", "c", "tcp", l.priv["a"]+":80")
	l.want(probeAnswered, "echo reply", "c", "icmp", l.priv["a"])
	// VRRP (IP protocol 112) is dropped between the tagged droplets (they
	// allow each other all TCP and UDP) and from the untagged one, while
	// TCP between the same two passes.
	vrrpAB, vrrpCB := nonce("vrrp-ab"), nonce("vrrp-cb")
	// The sender cannot tell: its send succeeds (no EPERM from its own
	// kernel), the packet vanishes, as on DO.
	if code, out := l.probe("a", "--count", "4", "ipproto", "112", l.priv["b"], vrrpAB); code != probeAnswered {
		t.Errorf("a sending VRRP: exit %d %s, want the send to succeed", code, out)
	}
	if code, out := l.probe("c", "--count", "4", "ipproto", "112", l.priv["b"], vrrpCB); code != probeAnswered {
		t.Errorf("c (unfiltered) sending VRRP: exit %d %s", code, out)
	}
	l.want(probeAnswered, "b", "a", "tcp", l.priv["b"]+":8080")
	for _, line := range []string{"ipproto 112 from " + l.priv["a"] + " " + vrrpAB, "ipproto 112 from " + l.priv["c"] + " " + vrrpCB} {
		if l.received("b", line) {
			t.Errorf("b received %q through the firewall", line)
		}
	}
	// Stateful: a connection a opens to the internet gets its replies,
	// which no inbound rule allows, and so does the ICMP error about a UDP
	// datagram to a closed port (related); the metadata service answers.
	l.want(probeAnswered, "internet", "a", "tcp", internet)
	l.want(probeAnswered, "echo reply", "a", "icmp", host)
	l.want(probeRefused, "", "a", "udp", host+":9", nonce("udp"))
	if out, err := inNS(p.DropletNS(l.ids["a"]), "curl", "-sf", "-m", "3", "http://169.254.169.254/metadata/v1/id"); err != nil || strings.TrimSpace(out) != strconv.Itoa(l.ids["a"]) {
		t.Errorf("metadata from a: %q %v", out, err)
	}

	// Rule changes through the API take effect. The admin CIDR becomes the
	// internet's address: 22 answers.
	api(t, info, "PUT", fwPath, fwBody(inbound(host+"/32"), outbound), nil)
	l.want(probeAnswered, "a", "", "tcp", l.pub["a"]+":22")
	// The 80 rule removed: silence; back: answers.
	rules := inbound(host + "/32")
	start := time.Now()
	api(t, info, "PUT", fwPath, fwBody(rules[1:], outbound), nil)
	answered := time.Since(start)
	testutil.WaitFor(t, 20*time.Second, func() error {
		out, err := run(ctx, "ip", "netns", "exec", p.DropletNS(l.ids["a"]), "nft", "list", "table", nftFamily, nftTable)
		if err != nil || strings.Contains(out, "tcp dport 80 ") {
			return fmt.Errorf("the 80 rule is still in a's table (%v)", err)
		}
		return nil
	})
	t.Logf("rule removal: PUT answered after %v, rule gone from the droplet's table after %v", answered, time.Since(start))
	l.waitFor(probeTimeout, "", "tcp", l.pub["a"]+":80")
	start = time.Now()
	api(t, info, "PUT", fwPath, fwBody(rules, outbound), nil)
	l.waitFor(probeAnswered, "", "tcp", l.pub["a"]+":80")
	t.Logf("rule added back: 80 answers %v after the PUT was sent", time.Since(start))
	// No outbound rules: a reaches nothing but the metadata service; a
	// connection from the internet it accepts still gets its replies.
	api(t, info, "PUT", fwPath, fwBody(rules, nil), nil)
	l.waitFor(probeTimeout, "a", "tcp", internet)
	// Silently: the datagram is sent (no EPERM) and never arrives (no ICMP
	// port unreachable comes back).
	l.want(probeTimeout, "", "a", "udp", host+":9", nonce("udp"))
	l.want(probeAnswered, "a", "", "tcp", l.pub["a"]+":80")
	if out, err := inNS(p.DropletNS(l.ids["a"]), "curl", "-sf", "-m", "3", "http://169.254.169.254/metadata/v1/id"); err != nil || strings.TrimSpace(out) != strconv.Itoa(l.ids["a"]) {
		t.Errorf("metadata from a without outbound rules: %q %v", out, err)
	}
	api(t, info, "PUT", fwPath, fwBody(rules, outbound), nil)
	l.waitFor(probeAnswered, "a", "tcp", internet)

	// The tag taken off b: no firewall targets it, so it is unfiltered; and
	// b's addresses leave the tag sources of a's rules.
	api(t, info, "DELETE", "/v2/tags/"+tag+"/resources", map[string]any{
		"resources": []map[string]any{{"resource_id": strconv.Itoa(l.ids["b"]), "resource_type": "droplet"}}}, nil)
	l.waitFor(probeAnswered, "", "tcp", l.pub["b"]+":8080")
	testutil.WaitFor(t, 20*time.Second, func() error {
		if out, err := run(ctx, "ip", "netns", "exec", p.DropletNS(l.ids["b"]), "nft", "list", "tables"); err != nil || strings.Contains(out, nftTable) {
			return fmt.Errorf("b still has the %s table: %q %v", nftTable, out, err)
		}
		return nil
	})
	post := nonce("vrrp")
	testutil.WaitFor(t, 10*time.Second, func() error {
		l.probe("c", "ipproto", "112", l.priv["b"], post)
		if !l.received("b", "ipproto 112 from "+l.priv["c"]+" "+post) {
			return fmt.Errorf("no VRRP from c at unfiltered b")
		}
		return nil
	})
	udp = nonce("udp")
	l.want(probeTimeout, "", "b", "udp", l.priv["a"]+":5000", udp)
	l.want(probeAnswered, "a", "", "tcp", l.pub["a"]+":80")
}
