package report

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/signing"
)

// ReportError is a node report that cannot be believed: not signed with
// the report key the state records for its node, or about another node.
// Readers treat that node as unheard-of (health unknown, no mesh key, no
// rollout progress) and never act on what it says.
type ReportError struct {
	NodeID string
	Reason string
}

func (e *ReportError) Error() string { return "report of node " + e.NodeID + ": " + e.Reason }

// OpenReport verifies and decodes node id's status report b against st,
// a verified state: a node with a report_key there must have signed it
// with that key; a node without one (made before report signing) may
// write it unsigned. The report must name that node and st's cluster. A
// report that fails is a *ReportError.
func OpenReport(b []byte, st *cluster.State, id string) (*Status, error) {
	n := st.Node(id)
	if n == nil {
		return nil, &ReportError{id, "not a node of cluster " + st.Name}
	}
	if len(b) > MaxStatusBytes+envelopeBytes {
		return nil, &ReportError{id, fmt.Sprintf("report of %d bytes, more than %d", len(b), MaxStatusBytes+envelopeBytes)}
	}
	var payload []byte
	if n.ReportKey == "" {
		p, _, err := signing.Unwrap(b)
		if err != nil {
			return nil, &ReportError{id, err.Error()}
		}
		payload = p
	} else {
		pub, err := signing.ParsePublicKey(n.ReportKey)
		if err != nil {
			return nil, &ReportError{id, "report_key in the state: " + err.Error()}
		}
		if payload, err = signing.Open(signing.KindReport, b, pub); err != nil {
			if errors.Is(err, signing.ErrUnsigned) {
				return nil, &ReportError{id, "report not signed (the state holds a report key for this node)"}
			}
			return nil, &ReportError{id, "report signature invalid: " + err.Error()}
		}
	}
	// Signed or not, a node speaks only for itself, in its cluster, and
	// not from the future (DecodeStatusOf).
	s, err := DecodeStatusOf(payload, st.Name, id, time.Now())
	if err != nil {
		return nil, &ReportError{id, err.Error()}
	}
	return s, nil
}

// envelopeBytes bounds what a signed envelope adds to a report.
const envelopeBytes = 1 << 10

// ReadReport GETs node id's report and opens it (OpenReport). No report
// yet: nil, nil. A report that cannot be believed: nil and a *ReportError.
// This is the one way the CLI and nodes read reports.
func ReadReport(ctx context.Context, store bucket.Store, st *cluster.State, id string) (*Status, error) {
	obj, err := store.Get(ctx, cluster.StatusKey(st.Name, id), "")
	if errors.Is(err, bucket.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return OpenReport(obj.Body, st, id)
}

// SignReport encodes a report as dynia-pull writes it: indented JSON,
// signed with key when there is one.
func SignReport(s Status, key ed25519.PrivateKey) ([]byte, error) {
	b, err := jsonIndent(s)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return append(b, '\n'), nil
	}
	return signing.Seal(signing.KindReport, key, b)
}
