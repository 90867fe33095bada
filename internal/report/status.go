// Package report is a node's status report (clusters/<name>/nodes/<id>/status.json)
// and its log tails (…/logs/<component>.log): the types dynia-pull writes
// and the CLI reads, their bounds, decoding, signing and verification. It
// is small on purpose: the CLI links it without linking the daemon
// (internal/pull, with its metrics and file watching).
package report

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is what a node reports to clusters/<name>/nodes/<id>/status.json
// after each apply, on each VRRP change and otherwise once a minute.
// `dynia node list` reads it. Fields are only ever added, never renamed.
type Status struct {
	NodeID               string          `json:"node_id"`
	Cluster              string          `json:"cluster"`
	AppliedGeneration    int64           `json:"applied_generation"`
	HAProxyConfigHash    string          `json:"haproxy_config_hash"`
	KeepalivedConfigHash string          `json:"keepalived_config_hash"`
	VRRPState            string          `json:"vrrp_state"` // MASTER, BACKUP, FAULT or UNKNOWN
	Backends             []BackendStatus `json:"backends"`
	AppHealthy           bool            `json:"app_healthy"`
	Version              string          `json:"version"` // dynia-pull's build version (`dynia-pull version`)
	// Image is the droplet image the node was created from (pull.json's
	// image: a snapshot id or a distribution slug); empty when pull.json
	// does not say (a node made before it did).
	Image       string           `json:"image,omitempty"`
	LastError   string           `json:"last_error,omitempty"` // empty once an apply succeeds again
	LastErrorAt *time.Time       `json:"last_error_at,omitempty"`
	LastApplyAt *time.Time       `json:"last_apply_at,omitempty"`
	ReservedIP  ReservedIPStatus `json:"reserved_ip"`
	// Mesh is this node's side of the WireGuard mesh VRRP runs over; absent
	// with mesh_disabled, or while the key cannot be loaded. Peers learn the
	// node's public key and port from here.
	Mesh *MeshStatus `json:"mesh,omitempty"`
	// App is the app release this node runs, or moves to (absent: the node
	// runs no app runtime).
	App *AppStatus `json:"app,omitempty"`
	// TLS is the certificate this node serves on :443 (absent: TLS off).
	TLS *TLSStatus `json:"tls,omitempty"`
	// Failover says whether this node could move the Reserved IP to itself
	// now: its node token was checked (at start, every 10 minutes, when the
	// file changes, and by every claim).
	Failover FailoverStatus `json:"failover"`
	// StateSignature is "verified" (pull.json names the state key: only
	// states signed with it are applied) or "unchecked" (a node made
	// before state signing).
	StateSignature string `json:"state_signature,omitempty"`
	// StateError is why the state in the bucket is refused — not signed
	// with the state key, or older than the generation this node applied
	// (a replay) — while the node serves its last good config; empty once
	// a good state arrives.
	StateError string `json:"state_error,omitempty"`
	// UpgradeRequired is the dynia-pull version the state in the bucket
	// requires (its min_pull_version, or "schema_version N") while
	// this older node refuses it and serves its last good config; empty
	// otherwise. StateError then says the same in words.
	UpgradeRequired string     `json:"upgrade_required,omitempty"`
	StateErrorAt    *time.Time `json:"state_error_at,omitempty"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

// TLSStatus is the certificate a node serves.
type TLSStatus struct {
	Serial      string     `json:"serial,omitempty"`
	Names       []string   `json:"names,omitempty"`
	NotAfter    *time.Time `json:"not_after,omitempty"`
	InstalledAt *time.Time `json:"installed_at,omitempty"`
	// Placeholder: no certificate was issued yet; the node serves a
	// self-signed stand-in so HAProxy can bind :443.
	Placeholder bool `json:"placeholder,omitempty"`
	// Error is the last TLS problem (a certificate that failed to verify,
	// an order that failed); the node keeps serving what it has.
	Error string `json:"error,omitempty"`
}

// FailoverStatus is whether the node's claimer can work.
type FailoverStatus struct {
	Ready     bool       `json:"ready"`
	Error     string     `json:"error,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// MeshStatus is a node's WireGuard interface as its report shows it.
type MeshStatus struct {
	Interface string `json:"interface"`
	PublicKey string `json:"public_key"`        // base64, as wg(8) shows it
	Address   string `json:"address,omitempty"` // mesh address, once the state names the node's private IP
	Port      int    `json:"port"`              // UDP listen port
	// Peers are the interface's peers, sorted by node id, refreshed at each
	// report (the report is not written more often for them).
	Peers []MeshPeerStatus `json:"peers"`
}

// MeshPeerStatus is one configured peer.
type MeshPeerStatus struct {
	NodeID    string `json:"node_id,omitempty"` // empty: a key no member has (being removed)
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint,omitempty"` // private IP:port WireGuard sends to
	// LatestHandshakeAgeSeconds is the age of the latest completed
	// handshake with this peer, in whole seconds; absent: none yet. Every
	// pair exchanges a keepalive every 25 s and WireGuard renews sessions
	// every 2 minutes, so a healthy peer stays under about 3 minutes
	// (wireguard.com/protocol: REKEY_AFTER_TIME 120 s).
	LatestHandshakeAgeSeconds *int64 `json:"latest_handshake_age_seconds,omitempty"`
}

// ReservedIPStatus is this node's view of the cluster's Reserved IP.
type ReservedIPStatus struct {
	Held           bool       `json:"held"`
	LastMoveAt     *time.Time `json:"last_move_at,omitempty"`
	LastMoveReason string     `json:"last_move_reason,omitempty"`
	// Note is a lasting condition, e.g. MASTER without the IP while a
	// healthy holder keeps it (VRRP cut between nodes).
	Note string `json:"note,omitempty"`
}

// DecodeStatus reads a status.json, tolerating fields added later, and
// refuses one that is too large, ambiguous or invalid (decodeStatus). Use
// DecodeStatusOf where the reader knows whose report it is.
func DecodeStatus(b []byte) (*Status, error) {
	s, err := decodeStatus(b)
	if err != nil {
		return nil, fmt.Errorf("node status: %w", err)
	}
	return s, nil
}

func jsonIndent(s Status) ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// BackendStatus is one server as this node's HAProxy sees it.
type BackendStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"` // UP, DOWN, DRAIN or MAINT
}

// AppStatus is the app part of a node's report.
type AppStatus struct {
	// Release is the release this node runs and serves (0: none).
	Release int64  `json:"release"`
	Image   string `json:"image,omitempty"`
	// State is none, starting (a new release is being started), running,
	// or waiting (the rollout has not reached this node yet).
	State   string     `json:"state"`
	Healthy bool       `json:"healthy"`
	Since   *time.Time `json:"since,omitempty"`
	// Target is the release the node is moving to, when not Release.
	Target  int64  `json:"target,omitempty"`
	Waiting string `json:"waiting,omitempty"`
	// FailedRelease could not be made healthy here; Error says why and
	// Logs are its last lines (secrets redacted).
	FailedRelease int64    `json:"failed_release,omitempty"`
	Error         string   `json:"error,omitempty"`
	Logs          []string `json:"logs,omitempty"`
}

// App states.
const (
	AppNone     = "none"
	AppStarting = "starting"
	AppRunning  = "running"
	AppWaiting  = "waiting"
)

// VRRP states reported in Status.VRRPState.
const (
	VRRPMaster  = "MASTER"
	VRRPBackup  = "BACKUP"
	VRRPFault   = "FAULT"
	VRRPUnknown = "UNKNOWN"
)

// State signature modes a report shows (Status.StateSignature).
const (
	StateVerified  = "verified"  // pull.json names the state key: every applied state verified
	StateUnchecked = "unchecked" // a node made before signing: signatures not checked
)
