package sandbox

import (
	"strings"
	"testing"
)

func TestNewPlan(t *testing.T) {
	t.Parallel()
	p, err := newPlan("dynia", DefaultPublicRange)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		p.RouterNS():            "dynia-rt",
		p.HostVeth():            "dynia-h",
		p.DropletNS(3164444):    "dynia-d3164444",
		p.RouterIP().String():   "198.51.100.1",
		p.HostIP().String():     "198.51.100.254",
		p.AllocRange().String(): "198.51.100.0/25",
		p.APIURL():              "http://198.51.100.1",
		p.S3URL():               "http://198.51.100.1:9000",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	for _, tc := range []struct{ prefix, rng, wantErr string }{
		{"dynia", "203.0.113.0/24", "never route"},
		{"dynia", "203.0.0.0/16", "never route"},
		{"dynia", "198.51.100.5/24", "host bits"},
		{"dynia", "10.0.0.0/8", "between /16 and /26"},
		{"dynia", "2001:db8::/64", "IPv4"},
		{"Bad", "198.51.100.0/24", "prefix"},
		{"waytoolongprefix", "198.51.100.0/24", "prefix"},
	} {
		if _, err := newPlan(tc.prefix, tc.rng); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("newPlan(%q, %q) = %v, want error containing %q", tc.prefix, tc.rng, err, tc.wantErr)
		}
	}
}

func TestCheckRangeFree(t *testing.T) {
	t.Parallel()
	p, _ := newPlan("dynia", DefaultPublicRange)
	addrs := `[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
	           {"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24}]}]`
	free := `[{"dst":"default","dev":"eth0"},{"dst":"192.0.2.0/24","dev":"eth0"},
	          {"dst":"127.0.0.1","dev":"lo","table":"local","type":"local"}]`
	if err := checkRangeFree(p.Public, []byte(free), []byte(addrs)); err != nil {
		t.Errorf("free range refused: %v", err)
	}
	used := `[{"dst":"default","dev":"eth0"},{"dst":"198.51.0.0/16","dev":"tun0"}]`
	if err := checkRangeFree(p.Public, []byte(used), []byte(addrs)); err == nil || !strings.Contains(err.Error(), "tun0") {
		t.Errorf("overlapping route: got %v", err)
	}
	host := `[{"dst":"198.51.100.77","dev":"wg0"}]`
	if err := checkRangeFree(p.Public, []byte(host), []byte(addrs)); err == nil {
		t.Error("overlapping /32 route accepted")
	}
	addrUsed := `[{"ifname":"eth1","addr_info":[{"family":"inet","local":"198.51.100.9","prefixlen":32}]}]`
	if err := checkRangeFree(p.Public, []byte(free), []byte(addrUsed)); err == nil || !strings.Contains(err.Error(), "eth1") {
		t.Errorf("address in range: got %v", err)
	}
}
