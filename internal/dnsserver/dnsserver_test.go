package dnsserver

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestServe(t *testing.T) {
	var mu sync.Mutex
	cf := []Record{{Name: "app.example.test", IP: netip.MustParseAddr("10.0.0.1")}}
	do := []Record{
		{Name: "lb.do.example.", IP: netip.MustParseAddr("10.0.0.2"), TTL: 30},
		{Name: "LB.do.example", IP: netip.MustParseAddr("10.0.0.3")},
		{Name: "v6.do.example", IP: netip.MustParseAddr("2001:db8::1")},
	}
	srv := New(nil,
		func() []Record { mu.Lock(); defer mu.Unlock(); return append([]Record(nil), cf...) },
		func() []Record { return do },
	)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := pc.LocalAddr().String()

	ask := func(t *testing.T, netw, name string, qtype uint16) (string, []string) {
		t.Helper()
		c := &dns.Client{Net: netw}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		// Serve may not be accepting yet on a loaded machine: retry a few
		// times on a network error (not on an answer).
		var in *dns.Msg
		for i := 0; i < 50; i++ {
			in, _, err = c.Exchange(m, addr)
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", netw, name, err)
		}
		if !in.Authoritative {
			t.Errorf("%s %s: answer not authoritative", netw, name)
		}
		var ips []string
		for _, rr := range in.Answer {
			ips = append(ips, rr.(*dns.A).A.String())
		}
		sort.Strings(ips)
		return dns.RcodeToString[in.Rcode], ips
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			name      string
			qtype     uint16
			wantRcode string
			wantIPs   []string
		}{
			{"app.example.test", dns.TypeA, "NOERROR", []string{"10.0.0.1"}},
			{"APP.Example.Test", dns.TypeA, "NOERROR", []string{"10.0.0.1"}},
			{"lb.do.example", dns.TypeA, "NOERROR", []string{"10.0.0.2", "10.0.0.3"}},
			{"app.example.test", dns.TypeAAAA, "NOERROR", nil},
			{"example.test", dns.TypeA, "NOERROR", nil}, // empty non-terminal
			{"v6.do.example", dns.TypeA, "NOERROR", nil},
			{"nope.example.test", dns.TypeA, "NXDOMAIN", nil},
			{"other.test", dns.TypeA, "NXDOMAIN", nil},
		} {
			rcode, ips := ask(t, netw, tc.name, tc.qtype)
			if rcode != tc.wantRcode || !cmp.Equal(ips, tc.wantIPs) {
				t.Errorf("%s %s %s: %s %v, want %s %v", netw, tc.name, dns.TypeToString[tc.qtype], rcode, ips, tc.wantRcode, tc.wantIPs)
			}
		}
	}

	// Answers follow the sources at query time.
	mu.Lock()
	cf[0].IP = netip.MustParseAddr("10.0.0.9")
	mu.Unlock()
	if _, ips := ask(t, "udp", "app.example.test", dns.TypeA); !cmp.Equal(ips, []string{"10.0.0.9"}) {
		t.Fatalf("after the record moved: %v", ips)
	}
}
