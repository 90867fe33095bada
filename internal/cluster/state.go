// Package cluster is the cluster's desired state: the JSON document the CLI
// writes to <prefix>/clusters/<name>/state.json and every node reads. It holds
// the types, strict decoding and validation, the pure transitions the CLI
// applies (add, drain, remove, make active), two-word node names, and the
// optimistic compare-and-swap update loop over a bucket.Store.
//
// docs/state.md documents every field.
package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynia/dynia/internal/jsonstrict"
)

// SchemaVersion is the only state schema this build reads and writes.
const SchemaVersion = 1

// Defaults applied when a field is zero.
const (
	DefaultAppPort        = 8080
	DefaultHealthPath     = "/healthz"
	DefaultAdvertInterval = 1 // seconds
	FirstPriority         = 150
	PriorityStep          = 10
	MinPriority           = 1
	MaxPriority           = 254 // 255 is reserved by VRRP for an address owner
)

// Role is a node's place in the VRRP group.
type Role string

// Roles.
const (
	RoleActive  Role = "active"
	RoleStandby Role = "standby"
)

// Lifecycle is where a node is between creation and removal.
type Lifecycle string

// Lifecycles.
const (
	Provisioning Lifecycle = "provisioning" // droplet requested, not yet serving
	Ready        Lifecycle = "ready"        // in every HAProxy backend
	Draining     Lifecycle = "draining"     // kept in backends as drain: no new requests
	Removing     Lifecycle = "removing"     // out of the backends, droplet being destroyed
)

// State is the whole desired state of one cluster.
type State struct {
	SchemaVersion int `json:"schema_version"`
	// MinPullVersion is the oldest dynia-pull release that serves this
	// state correctly (vMAJOR.MINOR.PATCH; empty: any). A dynia-pull below
	// it keeps its last good config and reports "upgrade required"
	// (compat.go).
	MinPullVersion string `json:"min_pull_version,omitempty"`
	Generation     int64  `json:"generation"`
	Name           string `json:"name"`
	Region         string `json:"region"`
	Size           string `json:"size"`
	Image          string `json:"image"` // snapshot id or distribution slug
	VPC            VPC    `json:"vpc"`
	ReservedIP     string `json:"reserved_ip,omitempty"`
	FirewallID     string `json:"firewall_id,omitempty"`
	// AdminCIDRs may reach SSH (22/tcp) through the firewall; empty: nobody.
	AdminCIDRs []string `json:"admin_cidrs,omitempty"`
	// SecretsRecipient is the cluster key's public half (an age X25519
	// recipient): the CLI seals secrets to it; nodes hold the identity.
	SecretsRecipient string `json:"secrets_recipient,omitempty"`
	// SigningKey is the public half of the cluster's state key (Ed25519,
	// base64): the key every write of this document is signed with
	// (sign.go). Nodes trust the copy in their pull.json, the CLI its key
	// file; this one lets either name a mismatch. Empty: a cluster whose
	// state was never signed.
	SigningKey string `json:"signing_key,omitempty"`
	// NodeSpacesKey is the Spaces key nodes use (internal/ops, nodekey.go).
	NodeSpacesKey *NodeSpacesKey `json:"node_spaces_key,omitempty"`
	DNS           *DNS           `json:"dns,omitempty"`
	// TLS, when set, serves HTTPS on every node (tls.go).
	TLS       *TLS      `json:"tls,omitempty"`
	App       App       `json:"app"`
	HA        HA        `json:"ha"`
	Nodes     []Node    `json:"nodes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// RecentOps are the operation ids of the last MaxRecentOps writes,
	// oldest first: a writer whose answer was lost finds its own id here
	// and knows the write was applied (Store.Update, Store.Create).
	RecentOps []string `json:"recent_ops,omitempty"`
}

// MaxRecentOps bounds State.RecentOps: enough for every write a few
// concurrent commands make while one of them re-reads after a lost answer.
const MaxRecentOps = 32

// HasOp reports whether the write with operation id op is in the document.
func (s *State) HasOp(op string) bool {
	return op != "" && slices.Contains(s.RecentOps, op)
}

// withOp records op as the newest operation, dropping the oldest beyond
// MaxRecentOps.
func (s *State) withOp(op string) {
	ops := append(slices.Clone(s.RecentOps), op)
	if len(ops) > MaxRecentOps {
		ops = ops[len(ops)-MaxRecentOps:]
	}
	s.RecentOps = ops
}

// VPC is the cluster's private network.
type VPC struct {
	ID      string `json:"id,omitempty"`
	CIDR    string `json:"cidr,omitempty"`
	Created bool   `json:"created,omitempty"` // dynia made it, so destroy may delete it
}

// DNS is the optional A record pointing at the Reserved IP.
type DNS struct {
	// Provider is where the record lives: "digitalocean" ("" reads as it)
	// or "cloudflare".
	Provider string `json:"provider,omitempty"`
	// Domain is the zone (a DO domain, a Cloudflare zone).
	Domain string `json:"domain"`
	Name   string `json:"name"` // record name within Domain ("@" for the apex)
	// RecordID is the provider's id (DO: a number; Cloudflare: a hex id).
	RecordID string `json:"record_id,omitempty"`
	// Created: dynia made the record (it did not exist), so `cluster
	// destroy` deletes it; a record dynia only repointed is left alone.
	Created bool `json:"created,omitempty"`
}

// DNS providers.
const (
	DNSDigitalOcean = "digitalocean"
	DNSCloudflare   = "cloudflare"
)

// FQDN is the record's full name.
func (d *DNS) FQDN() string {
	if d.Name == "" || d.Name == "@" {
		return d.Domain
	}
	return d.Name + "." + d.Domain
}

// App is the application every node runs: its releases and how the
// current one rolls out (app.go).
type App struct {
	// Port is where every node serves the app on its private IP (HAProxy's
	// node-local frontend, which forwards to the node's current release);
	// peers' HAProxies and the firewall use it.
	Port int `json:"port"`
	// HealthPath is the health path of releases deployed without one.
	HealthPath string `json:"health_path"`
	// Releases are the last MaxReleases releases, oldest first.
	Releases []Release `json:"releases,omitempty"`
	// Current is the release nodes converge to (0: none deployed yet).
	Current int64 `json:"current,omitempty"`
	// Rollout, while set, orders the nodes' move to Current.
	Rollout *Rollout `json:"rollout,omitempty"`
}

// HA holds the keepalived settings shared by every node.
type HA struct {
	AdvertInterval float64 `json:"advert_interval"` // seconds; VRRPv3 allows fractions
	Preempt        bool    `json:"preempt"`
}

// Node is one droplet in the cluster.
type Node struct {
	ID        string    `json:"id"`
	DropletID int       `json:"droplet_id,omitempty"`
	PublicIP  string    `json:"public_ip,omitempty"`
	PrivateIP string    `json:"private_ip,omitempty"`
	Priority  int       `json:"priority"`
	Role      Role      `json:"role"`
	Lifecycle Lifecycle `json:"lifecycle"`
	AppPort   int       `json:"app_port,omitempty"` // overrides App.Port on this node
	// ReportKey is the public half of the node's report key (Ed25519,
	// base64): its status reports must be signed with it. The CLI makes
	// the pair when it creates the droplet; the private half is only in
	// that droplet's user-data. Empty: a node made before report signing.
	ReportKey string `json:"report_key,omitempty"`
	// Image is the image this node's droplet is made from (a snapshot
	// id); empty: the cluster's Image. `node replace` sets it on a
	// replacement until the replacement is finished.
	Image string `json:"image,omitempty"`
	// Replaces, while set, names the node this one replaces (`node
	// replace`, `cluster upgrade`): a re-run after a crash finds the
	// replacement here instead of making another. Cleared when the old
	// node is gone.
	Replaces  string    `json:"replaces,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ImageOr is the node's image: its own, else the cluster's.
func (n Node) ImageOr(clusterImage string) string {
	if n.Image != "" {
		return n.Image
	}
	return clusterImage
}

// Hostname is the droplet name: <cluster>-<node id>.
func Hostname(cluster, nodeID string) string { return cluster + "-" + nodeID }

// Port is the node's app port: its override, else the cluster's.
func (n Node) Port(app App) int {
	if n.AppPort != 0 {
		return n.AppPort
	}
	return app.Port
}

// Active returns the active node, or nil.
func (s *State) Active() *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Role == RoleActive {
			return &s.Nodes[i]
		}
	}
	return nil
}

// Node returns the node with id, or nil.
func (s *State) Node(id string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].ID == id {
			return &s.Nodes[i]
		}
	}
	return nil
}

// New returns the state of a new cluster with defaults filled in.
func New(name, region, size, image string, now time.Time) *State {
	s := &State{
		SchemaVersion: SchemaVersion,
		Name:          name,
		Region:        region,
		Size:          size,
		Image:         image,
		Nodes:         []Node{},
		CreatedAt:     now.UTC(),
		UpdatedAt:     now.UTC(),
	}
	s.applyDefaults()
	return s
}

func (s *State) applyDefaults() {
	if s.App.Port == 0 {
		s.App.Port = DefaultAppPort
	}
	if s.App.HealthPath == "" {
		s.App.HealthPath = DefaultHealthPath
	}
	if s.HA.AdvertInterval == 0 {
		s.HA.AdvertInterval = DefaultAdvertInterval
	}
	if s.Nodes == nil {
		s.Nodes = []Node{}
	}
}

// MaxStateBytes bounds a state document (a 254-node state is about 80 KiB).
const MaxStateBytes = 1 << 20

// Decode strictly decodes and validates a state document, as the CLI
// reads it: a document over MaxStateBytes, duplicate or case-variant keys,
// trailing data (package jsonstrict), an unknown schema_version, or any
// invalid value is an error naming the field; a field this build does not
// know, or a schema_version above its own, is a *NewerStateError (the CLI
// would drop the field on its next write).
func Decode(b []byte) (*State, error) { return decode(b, "", false) }

// DecodeNode decodes and validates a state document as dynia-pull (of
// build version pullVersion) reads it: like Decode, except that fields it
// does not know are ignored (a newer CLI added them; they are optional by
// the compatibility rule, docs/state.md), and a state that needs a newer
// dynia-pull — min_pull_version above pullVersion (VersionBelow), or a
// schema_version above SchemaVersion — is an *UpgradeRequiredError,
// checked before validation (a newer rule may accept values this build
// refuses). Duplicate and case-variant keys of the fields it knows are
// still refused.
func DecodeNode(b []byte, pullVersion string) (*State, error) { return decode(b, pullVersion, true) }

func decode(b []byte, pullVersion string, node bool) (*State, error) {
	check := jsonstrict.CheckKnown[State]
	if node {
		check = jsonstrict.Check[State]
	}
	if err := check(b, MaxStateBytes); err != nil {
		var je *jsonstrict.Error
		if errors.As(err, &je) && errors.Is(err, jsonstrict.ErrUnknownField) {
			if v, ok := newerSchema(b); ok {
				return nil, &NewerStateError{Field: "schema_version", Value: v}
			}
			return nil, &NewerStateError{Field: je.Path}
		}
		return nil, fmt.Errorf("state: %w", err)
	}
	var probe struct {
		SchemaVersion  *int   `json:"schema_version"`
		MinPullVersion string `json:"min_pull_version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("state: not valid JSON: %w", err)
	}
	if probe.SchemaVersion == nil {
		return nil, &FieldError{Field: "schema_version", Value: "", Reason: "missing"}
	}
	if v := *probe.SchemaVersion; v > SchemaVersion && node {
		return nil, &UpgradeRequiredError{Need: fmt.Sprintf("schema_version %d", v), Have: pullVersion, Schema: v}
	} else if v > SchemaVersion {
		return nil, &NewerStateError{Field: "schema_version", Value: fmt.Sprint(v)}
	} else if v != SchemaVersion {
		return nil, &FieldError{Field: "schema_version", Value: fmt.Sprint(v),
			Reason: fmt.Sprintf("unsupported (this build reads %d)", SchemaVersion)}
	}
	if err := ValidateMinPullVersion(probe.MinPullVersion); err != nil {
		if node {
			// A form this build cannot read comes from a newer CLI: the
			// node cannot tell whether it qualifies, so it must not apply.
			return nil, &UpgradeRequiredError{Need: probe.MinPullVersion, Have: pullVersion}
		}
		return nil, err
	}
	if node && VersionBelow(pullVersion, probe.MinPullVersion) {
		return nil, &UpgradeRequiredError{Need: probe.MinPullVersion, Have: pullVersion}
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	if !node {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("state: trailing data after the JSON document")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// newerSchema reports a schema_version above SchemaVersion in b, which
// explains unknown fields better than the first of them.
func newerSchema(b []byte) (string, bool) {
	var probe struct {
		SchemaVersion *int `json:"schema_version"`
	}
	if json.Unmarshal(b, &probe) != nil || probe.SchemaVersion == nil || *probe.SchemaVersion <= SchemaVersion {
		return "", false
	}
	return fmt.Sprint(*probe.SchemaVersion), true
}

// Encode validates and writes the canonical JSON form (indented, newline-terminated).
func (s *State) Encode() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if len(b) >= MaxStateBytes {
		return nil, fmt.Errorf("state: %d bytes, over the limit of %d that nodes read", len(b)+1, MaxStateBytes)
	}
	return append(b, '\n'), nil
}

// Clone returns a deep copy, so transitions never alias the caller's state.
func (s *State) Clone() *State {
	c := *s
	c.Nodes = append([]Node(nil), s.Nodes...)
	if c.Nodes == nil {
		c.Nodes = []Node{}
	}
	if s.DNS != nil {
		d := *s.DNS
		c.DNS = &d
	}
	if s.NodeSpacesKey != nil {
		k := *s.NodeSpacesKey
		c.NodeSpacesKey = &k
	}
	if s.TLS != nil {
		t := *s.TLS
		t.Domains = slices.Clone(s.TLS.Domains)
		c.TLS = &t
	}
	c.AdminCIDRs = append([]string(nil), s.AdminCIDRs...)
	c.App = s.App.clone()
	c.RecentOps = slices.Clone(s.RecentOps)
	return &c
}
