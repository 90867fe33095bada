package report

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/jsonstrict"
)

// Bounds on a node status report. A report is about 300 bytes, plus about
// 60 per backend and 230 per mesh peer, plus a failed release's log lines
// (TrimLogs: at most MaxReportLogLines of MaxReportLogLine bytes): a
// node of a 254-node cluster (the most unique VRRP priorities allow)
// writes under 100 KiB (TestLargestReportFits).
const (
	MaxStatusBytes = 256 << 10 // the whole document
	// MaxReportLogLines and MaxReportLogLine bound the app log lines a
	// report carries.
	MaxReportLogLines = 20
	MaxReportLogLine  = 1024
	// MaxReportText bounds each free-text field (last_error, notes, the
	// failover error, version, image) as the CLI keeps and prints it; longer
	// text is cut, ending in "…".
	MaxReportText = 2048
	// MaxClockSkew is how far a report's times may be ahead of the
	// reader's clock. A report from further ahead would look fresh for
	// that long after its node died.
	MaxClockSkew = 10 * time.Minute
)

// earliestReport is before any report dynia could have written; an earlier
// time is garbage (a zero time.Time is year 1).
var earliestReport = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

var configHashRE = regexp.MustCompile(`^[0-9a-f]{0,64}$`)

// decodeStatus is DecodeStatus: a report at most MaxStatusBytes, without
// duplicate or case-variant keys or trailing data (package jsonstrict),
// fields added later tolerated; then every field the CLI acts on checked
// (checkStatus) and free text made safe to print (cleanText).
func decodeStatus(b []byte) (*Status, error) {
	if err := jsonstrict.Check[Status](b, MaxStatusBytes); err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	s.LastError = cleanText(s.LastError)
	s.StateError = cleanText(s.StateError)
	s.Version = cleanText(s.Version)
	s.Image = cleanText(s.Image)
	s.UpgradeRequired = cleanText(s.UpgradeRequired)
	s.ReservedIP.LastMoveReason = cleanText(s.ReservedIP.LastMoveReason)
	s.ReservedIP.Note = cleanText(s.ReservedIP.Note)
	s.Failover.Error = cleanText(s.Failover.Error)
	if s.App != nil {
		s.App.Error = cleanText(s.App.Error)
		s.App.Waiting = cleanText(s.App.Waiting)
		for i, l := range s.App.Logs {
			s.App.Logs[i] = cleanText(l)
		}
	}
	return &s, nil
}

// TrimLogs is what a report keeps of an app's log lines: the last
// MaxReportLogLines, each cut to MaxReportLogLine bytes, so a report stays
// far below MaxStatusBytes whatever the app printed.
func TrimLogs(lines []string) []string {
	if len(lines) > MaxReportLogLines {
		lines = lines[len(lines)-MaxReportLogLines:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > MaxReportLogLine {
			l = strings.ToValidUTF8(l[:MaxReportLogLine-len("…")], "") + "…"
		}
		out[i] = l
	}
	return out
}

// DecodeStatusOf is DecodeStatus for the report at the status key of node
// nodeID in cluster clusterName, read at now: the report must say it is
// that node's, and none of its times may be more than MaxClockSkew ahead of
// now. The CLI reads reports with it, so a node can speak only for itself.
func DecodeStatusOf(b []byte, clusterName, nodeID string, now time.Time) (*Status, error) {
	s, err := DecodeStatus(b)
	if err != nil {
		return nil, err
	}
	if s.NodeID != nodeID {
		return nil, fmt.Errorf("node status: %w", &cluster.FieldError{Field: "node_id", Value: s.NodeID, Reason: "not the node whose report this is (" + nodeID + ")"})
	}
	if s.Cluster != clusterName {
		return nil, fmt.Errorf("node status: %w", &cluster.FieldError{Field: "cluster", Value: s.Cluster, Reason: "not the cluster whose report this is (" + clusterName + ")"})
	}
	limit := now.Add(MaxClockSkew)
	for _, tm := range s.times() {
		if tm.t != nil && tm.t.After(limit) {
			return nil, fmt.Errorf("node status: %w", &cluster.FieldError{Field: tm.field, Value: tm.t.Format(time.RFC3339),
				Reason: fmt.Sprintf("more than %v ahead of this machine's clock (%s)", MaxClockSkew, now.UTC().Format(time.RFC3339))})
		}
	}
	return s, nil
}

type namedTime struct {
	field string
	t     *time.Time
}

func (s *Status) times() []namedTime {
	return []namedTime{
		{"updated_at", &s.UpdatedAt}, {"last_error_at", s.LastErrorAt}, {"last_apply_at", s.LastApplyAt},
		{"reserved_ip.last_move_at", s.ReservedIP.LastMoveAt}, {"failover.checked_at", s.Failover.CheckedAt},
		{"state_error_at", s.StateErrorAt},
	}
}

// check validates what the CLI acts on: who wrote the report, the applied
// generation, the enumerations, the backends' ids and the times.
func (s *Status) check() error {
	if err := cluster.ValidateNodeID(s.NodeID); err != nil {
		return &cluster.FieldError{Field: "node_id", Value: s.NodeID, Reason: "must be a two-word node id"}
	}
	if err := cluster.ValidateName(s.Cluster); err != nil {
		return &cluster.FieldError{Field: "cluster", Value: s.Cluster, Reason: "not a cluster name"}
	}
	if s.AppliedGeneration < 0 {
		return &cluster.FieldError{Field: "applied_generation", Value: fmt.Sprint(s.AppliedGeneration), Reason: "must not be negative"}
	}
	switch s.VRRPState {
	case VRRPMaster, VRRPBackup, VRRPFault, VRRPUnknown:
	default:
		return &cluster.FieldError{Field: "vrrp_state", Value: s.VRRPState, Reason: "must be MASTER, BACKUP, FAULT or UNKNOWN"}
	}
	if !configHashRE.MatchString(s.HAProxyConfigHash) {
		return &cluster.FieldError{Field: "haproxy_config_hash", Value: s.HAProxyConfigHash, Reason: "must be lowercase hex"}
	}
	if !configHashRE.MatchString(s.KeepalivedConfigHash) {
		return &cluster.FieldError{Field: "keepalived_config_hash", Value: s.KeepalivedConfigHash, Reason: "must be lowercase hex"}
	}
	if len(s.Backends) > cluster.MaxPriority {
		return &cluster.FieldError{Field: "backends", Value: fmt.Sprint(len(s.Backends)), Reason: fmt.Sprintf("more than %d (a cluster's most nodes)", cluster.MaxPriority)}
	}
	seen := map[string]bool{}
	for i, b := range s.Backends {
		field := fmt.Sprintf("backends[%d]", i)
		if err := cluster.ValidateNodeID(b.ID); err != nil {
			return &cluster.FieldError{Field: field + ".id", Value: b.ID, Reason: "must be a two-word node id"}
		}
		if seen[b.ID] {
			return &cluster.FieldError{Field: field + ".id", Value: b.ID, Reason: "listed twice"}
		}
		seen[b.ID] = true
		switch b.Status {
		case "UP", "DOWN", "DRAIN", "MAINT":
		default:
			return &cluster.FieldError{Field: field + ".status", Value: b.Status, Reason: "must be UP, DOWN, DRAIN or MAINT"}
		}
	}
	if a := s.App; a != nil {
		switch {
		case a.Release < 0 || a.Target < 0 || a.FailedRelease < 0:
			return &cluster.FieldError{Field: "app", Value: fmt.Sprintf("%d/%d/%d", a.Release, a.Target, a.FailedRelease), Reason: "release numbers must not be negative"}
		case a.State != "" && a.State != AppNone && a.State != AppStarting && a.State != AppRunning && a.State != AppWaiting:
			return &cluster.FieldError{Field: "app.state", Value: a.State, Reason: "must be none, starting, running or waiting"}
		case a.Image != "" && cluster.ValidateImageDigest(a.Image) != nil:
			return &cluster.FieldError{Field: "app.image", Value: a.Image, Reason: "not an image reference by digest"}
		case len(a.Logs) > MaxReportLogLines:
			return &cluster.FieldError{Field: "app.logs", Value: fmt.Sprint(len(a.Logs)), Reason: fmt.Sprintf("more than %d lines", MaxReportLogLines)}
		}
	}
	switch s.StateSignature {
	case "", StateVerified, StateUnchecked:
	default:
		return &cluster.FieldError{Field: "state_signature", Value: s.StateSignature, Reason: "must be verified or unchecked"}
	}
	if s.UpdatedAt.IsZero() {
		return &cluster.FieldError{Field: "updated_at", Value: "", Reason: "missing"}
	}
	for _, tm := range s.times() {
		if tm.t != nil && tm.t.Before(earliestReport) {
			return &cluster.FieldError{Field: tm.field, Value: tm.t.Format(time.RFC3339), Reason: "before " + earliestReport.Format("2006")}
		}
	}
	return nil
}

// cleanText makes a report's free text safe to keep and print: control and
// format characters (terminal escapes, bidirectional overrides) become
// U+FFFD, and text beyond MaxReportText bytes is cut at a character
// boundary, ending in "…".
func cleanText(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= MaxReportText {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > MaxReportText-len("…") {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}
