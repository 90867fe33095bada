package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/procstat"
)

// RecipeURL is the community recipe the baseline rebuilds: DigitalOcean's
// tutorial "How To Set Up Highly Available HAProxy Servers with Keepalived
// and Reserved IPs on Ubuntu 14.04" (first published with Floating IPs).
const RecipeURL = "https://www.digitalocean.com/community/tutorials/how-to-set-up-highly-available-haproxy-servers-with-keepalived-and-reserved-ips-on-ubuntu-14-04"

// recipeKeepalived is the tutorial's keepalived.conf, as published: the
// private interface, unicast peers, priority 200 (primary, state MASTER) or
// 100 (secondary, state BACKUP), virtual_router_id 33, PASS
// authentication, no advert_int (keepalived's default, 1 s, VRRPv2), no
// virtual_ipaddress, notify_master running the assign wrapper. Two
// deviations, both forced by the sandbox and neither changing the logic:
// the health check is the droplet's own HAProxy pid (`pidof haproxy` would
// see every droplet's HAProxy: the sandbox's droplets share one PID space),
// and the notify script runs as root (keepalived 2.2 wants a script_user).
var recipeKeepalived = template.Must(template.New("keepalived.conf").Parse(`# {{ .URL }}
global_defs {
    script_user root
    enable_script_security
}

vrrp_script chk_haproxy {
    script "{{ .Check }}"
    interval 2
}

vrrp_instance VI_1 {
    interface eth0
    state {{ .State }}
    priority {{ .Priority }}

    virtual_router_id 33
    unicast_src_ip {{ .Self }}
    unicast_peer {
        {{ .Peer }}
    }

    authentication {
        auth_type PASS
        auth_pass password
    }

    track_script {
        chk_haproxy
    }

    notify_master {{ .Notify }}
}
`))

// recipeMaster is the tutorial's /etc/keepalived/master.sh: if the
// metadata says this droplet holds no Reserved IP, run the assign script
// up to 10 times, 3 s apart, until one call succeeds. The assign script
// (the tutorial downloads a Python one, do.co/assign-ip) POSTs the assign
// action and exits 0 when the API accepts it: nobody waits for the action
// to complete, nothing checks who else claims. Here it is curl with the
// same request; the token is read from a 0600 header file, never argv.
var recipeMaster = template.Must(template.New("master.sh").Parse(`#!/bin/sh
# {{ .URL }}
IP='{{ .RIP }}'
ID=$(curl -s http://169.254.169.254/metadata/v1/id)
HAS_RESERVED_IP=$(curl -s http://169.254.169.254/metadata/v1/reserved_ip/ipv4/active)

if [ "$HAS_RESERVED_IP" = "false" ]; then
    n=0
    while [ $n -lt 10 ]
    do
        curl -sf -o /dev/null -X POST -H @{{ .TokenHeader }} -H 'Content-Type: application/json' \
            -d "{\"type\":\"assign\",\"droplet_id\":$ID}" "{{ .API }}/v2/reserved_ips/$IP/actions" && break
        n=$((n+1))
        sleep 3
    done
fi
echo "$(date +%s.%N) master.sh done after $n tries (has_reserved_ip=$HAS_RESERVED_IP)" >> {{ .Log }}
`))

// recipeHAProxy balances over both nodes' apps, as the tutorial's HAProxy
// balances over its two web servers.
var recipeHAProxy = template.Must(template.New("haproxy.cfg").Parse(`global
    daemon
    pidfile {{ .Pid }}
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend www
    bind :80
    default_backend app
backend app
    balance roundrobin
{{- range $i, $a := .Apps }}
    server app{{ $i }} {{ $a }}:8080 check
{{- end }}
`))

// Recipe is the two-droplet baseline in a sandbox: bare droplets (no
// dynia-pull, no cloud firewall: the tutorial makes none) running the demo
// app, HAProxy and keepalived, started by the harness in their namespaces.
type Recipe struct {
	s     *Sandbox
	RIP   string
	Nodes [2]recipeNode // primary, secondary
}

type recipeNode struct {
	ID        int
	Name      string
	NS        string
	Private   string
	dir       string
	keepalive *exec.Cmd
}

// NewRecipe creates the two droplets in a VPC of their own and a Reserved
// IP on the primary, and starts their daemons.
func (s *Sandbox) NewRecipe(name string) *Recipe {
	ctx := context.Background()
	c := s.Cloud()
	vpc, _, err := c.EnsureVPC(ctx, name+"-vpc", "nyc3", "")
	if err != nil {
		s.r.Fatalf("recipe VPC: %v", err)
	}
	img, err := c.FindSnapshot(ctx, "dynia-node", "nyc3")
	if err != nil {
		s.r.Fatalf("recipe image: %v", err)
	}
	var specs []cloud.DropletSpec
	for _, n := range []string{"primary", "secondary"} {
		specs = append(specs, cloud.DropletSpec{Name: name + "-" + n, Region: "nyc3", Size: "s-1vcpu-1gb",
			Image: strconv.Itoa(img.ID), VPCUUID: vpc.ID})
	}
	ds, err := c.CreateDroplets(ctx, specs)
	if err != nil {
		s.r.Fatalf("recipe droplets: %v", err)
	}
	ids := []int{ds[0].ID, ds[1].ID}
	if ds, err = c.WaitActive(ctx, ids); err != nil {
		s.r.Fatalf("recipe droplets: %v", err)
	}
	rip, err := c.CreateReservedIP(ctx, ds[0].ID)
	if err != nil {
		s.r.Fatalf("recipe Reserved IP: %v", err)
	}
	rc := &Recipe{s: s, RIP: rip.IP}
	for i, d := range ds {
		rc.Nodes[i] = recipeNode{ID: d.ID, Name: d.Name, NS: s.Droplet(d.ID).Namespace, Private: d.PrivateIP,
			dir: filepath.Join(s.DropletDir(d.ID), "recipe")}
	}
	for i := range rc.Nodes {
		rc.write(i)
		rc.Start(i)
	}
	return rc
}

func d2i(rc *Recipe, id int) int {
	for i, n := range rc.Nodes {
		if n.ID == id {
			return i
		}
	}
	return -1
}

// recipeFiles renders a recipe node's files: keepalived.conf, master.sh
// (0700) and haproxy.cfg, for the node with private address self (primary:
// MASTER, priority 200) and its peer, in dir.
func recipeFiles(primary bool, self, peer, dir, rip, api string) (map[string]string, error) {
	state, prio := "BACKUP", 100
	if primary {
		state, prio = "MASTER", 200
	}
	files := []struct {
		name string
		tmpl *template.Template
		data any
	}{
		{"keepalived.conf", recipeKeepalived, map[string]any{"URL": RecipeURL, "State": state, "Priority": prio, "Self": self, "Peer": peer,
			"Check": "/bin/sh -c 'kill -0 $(cat " + filepath.Join(dir, "haproxy.pid") + ")'", "Notify": filepath.Join(dir, "master.sh")}},
		{"master.sh", recipeMaster, map[string]any{"URL": RecipeURL, "RIP": rip, "API": api,
			"TokenHeader": filepath.Join(dir, "token.header"), "Log": filepath.Join(dir, "master.log")}},
		{"haproxy.cfg", recipeHAProxy, map[string]any{"Pid": filepath.Join(dir, "haproxy.pid"), "Apps": []string{self, peer}}},
	}
	out := map[string]string{}
	for _, f := range files {
		var b strings.Builder
		if err := f.tmpl.Execute(&b, f.data); err != nil {
			return nil, fmt.Errorf("recipe %s: %w", f.name, err)
		}
		out[f.name] = b.String()
	}
	return out, nil
}

// write renders node i's files into its droplet directory.
func (rc *Recipe) write(i int) {
	n := rc.Nodes[i]
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		rc.s.r.Fatalf("recipe dir: %v", err)
	}
	files, err := recipeFiles(i == 0, n.Private, rc.Nodes[1-i].Private, n.dir, rc.RIP, rc.s.Info.APIURL)
	if err != nil {
		rc.s.r.Fatalf("%v", err)
	}
	files["token.header"] = "Authorization: Bearer " + rc.s.Info.Token + "\n"
	for name, content := range files {
		mode := os.FileMode(0o600)
		if name == "master.sh" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(content), mode); err != nil {
			rc.s.r.Fatalf("recipe %s: %v", name, err)
		}
	}
}

// Start starts node i's app, HAProxy and keepalived (after a power on,
// too: a bare droplet starts nothing by itself). Powering the droplet off
// kills them with everything else in its namespace.
func (rc *Recipe) Start(i int) {
	n := &rc.Nodes[i]
	logf, err := os.OpenFile(filepath.Join(n.dir, "daemons.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		rc.s.r.Fatalf("recipe log: %v", err)
	}
	defer logf.Close()
	start := func(env []string, args ...string) *exec.Cmd {
		cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			rc.s.r.Fatalf("recipe start %s: %v", args[0], err)
		}
		go func() { _ = cmd.Wait() }()
		return cmd
	}
	start([]string{"DYNIA_NODE_ID=" + n.Name, "DEMO_APP_VERSION=v1", "DEMO_APP_ADDR=" + n.Private + ":8080"},
		filepath.Join(rc.s.r.cfg.BinDir, "dynia-demo-app"))
	// HAProxy daemonizes (pid file in the node's directory).
	if _, err := Netns(n.NS, "haproxy", "-f", filepath.Join(n.dir, "haproxy.cfg")); err != nil {
		rc.s.r.Fatalf("recipe haproxy: %v", err) // the error ends with what haproxy printed
	}
	n.keepalive = start(nil, "keepalived", "-n", "-l", "-D", "-f", filepath.Join(n.dir, "keepalived.conf"),
		"-p", filepath.Join(n.dir, "keepalived.pid"), "-r", filepath.Join(n.dir, "keepalived-vrrp.pid"),
		"-c", filepath.Join(n.dir, "keepalived-checkers.pid"))
}

// Ready is nil when both nodes serve, the primary holds the Reserved IP
// (it preempts after a power on) and the Reserved IP answers.
func (rc *Recipe) Ready() error {
	for _, n := range rc.Nodes {
		if pidFromPlainFile(filepath.Join(n.dir, "keepalived-vrrp.pid")) == 0 {
			return fmt.Errorf("keepalived of %s not running", n.Name)
		}
	}
	if h := rc.s.Holder(rc.RIP); h != rc.Nodes[0].ID {
		return fmt.Errorf("the Reserved IP is on %d, not yet back on the primary %d", h, rc.Nodes[0].ID)
	}
	_, err := httpGet("http://" + rc.RIP + "/")
	return err
}

// pidFromPlainFile is a pid file's process if it is alive (0: none).
func pidFromPlainFile(path string) int {
	pid, _, err := procstat.ReadPidFile(path)
	if err != nil {
		return 0
	}
	return pid
}

// httpGet does one GET on a new connection (2 s timeout) and returns the
// first line of a 200 answer.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return request(context.Background(), c, http.MethodGet, url)
}
