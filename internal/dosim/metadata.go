package dosim

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// DropletIDHeader names the droplet a metadata request is for, when the
// caller's source address cannot (the sandbox sets it when proxying).
const DropletIDHeader = "X-Dynia-Droplet-ID"

// mdNode is a metadata tree node: a leaf value or a directory.
type mdNode struct {
	value    string
	children map[string]*mdNode
}

func leaf(v string) *mdNode { return &mdNode{value: v} }

func dir(kv map[string]*mdNode) *mdNode { return &mdNode{children: kv} }

func (s *Server) metadataDropletLocked(r *http.Request) *droplet {
	if h := r.Header.Get(DropletIDHeader); h != "" {
		id, _ := strconv.Atoi(h)
		return s.droplets[id]
	}
	ip := hostOnly(r.RemoteAddr)
	for _, id := range sortedKeys(s.droplets) {
		d := s.droplets[id]
		if ip == d.PublicIPv4 || ip == d.PrivateIPv4 || ip == d.AnchorIPv4 {
			return d
		}
	}
	return nil
}

// heldRIPLocked returns the reserved IP assigned to d ("" = none).
func (s *Server) heldRIPLocked(d *droplet) string {
	for _, ip := range sortedRIPs(s.rips) {
		if s.rips[ip].DropletID == d.ID {
			return ip
		}
	}
	return ""
}

func (s *Server) metadataTree(d *droplet, rip string) *mdNode {
	active := "false"
	ripDir := map[string]*mdNode{"active": leaf(active)}
	if rip != "" {
		ripDir = map[string]*mdNode{"active": leaf("true"), "ip_address": leaf(rip)}
	}
	ifaces := map[string]*mdNode{
		"private": dir(map[string]*mdNode{"0": dir(map[string]*mdNode{
			"mac":  leaf(mac(d.ID, 1)),
			"type": leaf("private"),
			"ipv4": dir(map[string]*mdNode{"address": leaf(d.PrivateIPv4), "netmask": leaf(d.PrivateNetmask), "gateway": leaf(d.PrivateGateway)}),
		})}),
	}
	if d.PublicNetworking {
		ifaces["public"] = dir(map[string]*mdNode{"0": dir(map[string]*mdNode{
			"mac":         leaf(mac(d.ID, 0)),
			"type":        leaf("public"),
			"ipv4":        dir(map[string]*mdNode{"address": leaf(d.PublicIPv4), "netmask": leaf(d.PublicNetmask), "gateway": leaf(d.PublicGateway)}),
			"anchor_ipv4": dir(map[string]*mdNode{"address": leaf(d.AnchorIPv4), "netmask": leaf(d.AnchorNetmask), "gateway": leaf(anchorGateway(d))}),
		})})
	}
	tags := map[string]*mdNode{}
	for _, t := range d.Tags {
		tags[t] = leaf(t)
	}
	return dir(map[string]*mdNode{
		"id":          leaf(strconv.Itoa(d.ID)),
		"hostname":    leaf(d.Name),
		"user-data":   leaf(d.UserData),
		"vendor-data": leaf(vendorData),
		"public-keys": leaf(strings.Join(d.SSHKeys, "\n")),
		"region":      leaf(d.Region),
		"interfaces":  dir(ifaces),
		"dns":         dir(map[string]*mdNode{"nameservers": leaf("67.207.67.2\n67.207.67.3")}),
		"floating_ip": dir(map[string]*mdNode{"ipv4": dir(ripDir)}),
		"reserved_ip": dir(map[string]*mdNode{"ipv4": dir(ripDir)}),
		"tags":        dir(tags),
		"features":    dir(map[string]*mdNode{"dhcp_enabled": leaf("false")}),
	})
}

const vendorData = "#cloud-config\n# vendor-data from the dosim simulator\n"

func mac(id, n int) string {
	return "de:ad:" + hex2(id>>16) + ":" + hex2(id>>8) + ":" + hex2(id) + ":" + hex2(n)
}

func hex2(v int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[(v>>4)&0xf], digits[v&0xf]})
}

func anchorGateway(d *droplet) string {
	if d.AnchorIPv4 == "" {
		return ""
	}
	parts := strings.Split(d.AnchorIPv4, ".")
	return parts[0] + "." + parts[1] + ".0.1"
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var d *droplet
	var tree *mdNode
	var body map[string]any
	s.update(func() {
		d = s.metadataDropletLocked(r)
		if d == nil {
			return
		}
		rip := s.heldRIPLocked(d)
		if r.URL.Path == "/metadata/v1.json" {
			body = s.metadataJSON(d, rip)
		} else {
			tree = s.metadataTree(d, rip)
		}
	})
	if d == nil {
		http.Error(w, "no droplet for this address", http.StatusNotFound)
		return
	}
	if body != nil {
		writeJSON(w, http.StatusOK, body)
		return
	}
	const root = "/metadata/v1"
	if r.URL.Path != root && !strings.HasPrefix(r.URL.Path, root+"/") {
		http.NotFound(w, r)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, root)
	trailing := strings.HasSuffix(rest, "/")
	node := tree
	for _, seg := range strings.Split(strings.Trim(rest, "/"), "/") {
		if seg == "" {
			continue
		}
		if node.children == nil || node.children[seg] == nil {
			http.NotFound(w, r)
			return
		}
		node = node.children[seg]
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if node.children != nil {
		if !trailing {
			// An index path without its trailing slash redirects, like DO.
			http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
			return
		}
		names := make([]string, 0, len(node.children))
		for k, c := range node.children {
			if c.children != nil {
				k += "/"
			}
			names = append(names, k)
		}
		sort.Strings(names)
		w.Write([]byte(strings.Join(names, "\n")))
		return
	}
	if trailing {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(node.value))
}

func (s *Server) metadataJSON(d *droplet, rip string) map[string]any {
	ripv4 := map[string]any{"active": false}
	if rip != "" {
		ripv4 = map[string]any{"active": true, "ip_address": rip}
	}
	ifaces := map[string]any{
		"private": []any{map[string]any{"ipv4": map[string]any{"ip_address": d.PrivateIPv4, "netmask": d.PrivateNetmask, "gateway": d.PrivateGateway},
			"mac": mac(d.ID, 1), "type": "private"}},
	}
	if d.PublicNetworking {
		ifaces["public"] = []any{map[string]any{
			"ipv4":        map[string]any{"ip_address": d.PublicIPv4, "netmask": d.PublicNetmask, "gateway": d.PublicGateway},
			"anchor_ipv4": map[string]any{"ip_address": d.AnchorIPv4, "netmask": d.AnchorNetmask, "gateway": anchorGateway(d)},
			"mac":         mac(d.ID, 0), "type": "public"}}
	}
	keys := d.SSHKeys
	if keys == nil {
		keys = []string{}
	}
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"droplet_id": d.ID, "hostname": d.Name, "user_data": d.UserData, "vendor_data": vendorData,
		"public_keys": keys, "auth_key": "", "region": d.Region, "interfaces": ifaces,
		"floating_ip": map[string]any{"ipv4": ripv4}, "reserved_ip": map[string]any{"ipv4": ripv4},
		"dns": map[string]any{"nameservers": []string{"67.207.67.2", "67.207.67.3"}}, "tags": tags,
		"features": map[string]any{"dhcp_enabled": false},
	}
}
