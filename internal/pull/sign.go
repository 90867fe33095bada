package pull

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

// Every node holds read-write credentials on the bucket, so neither the
// state nor a report is trusted for being there (docs/security.md). A node
// applies only a state signed with the key in its pull.json and never older
// than the one it applied last; it signs its own reports with its report
// key; and it believes a peer's report only when it verifies against the
// report key the (verified) state records for that peer.

// loadReportKey reads the node's report key. Like the mesh key, a file
// others may read is made 0600 (and logged) rather than refused: refusing
// would leave the node unable to report at all.
func loadReportKey(path string, log *slog.Logger) (ed25519.PrivateKey, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("report key file readable by others; making it 0600", "path", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("report key %s: %w", path, err)
		}
	}
	return signing.LoadPrivateKey(path)
}

// openState verifies and decodes a state object read from the bucket: a
// state not signed by the key in pull.json is refused (reason signature),
// so is one that needs a newer dynia-pull (reason upgrade_required: its
// min_pull_version or schema_version is above this build's), one older
// than the newest this node applied (reason replay: an old signed state
// put back), and an invalid one (decode). Fields this build does not know
// are ignored (cluster.DecodeNode).
func (d *Daemon) openState(b []byte) (*cluster.State, *ApplyError) {
	st, err := cluster.DecodeSignedNode(b, d.stateKey, d.version)
	var se *cluster.SignatureError
	if errors.As(err, &se) {
		return nil, &ApplyError{"signature", err}
	}
	if errors.Is(err, cluster.ErrUpgradeRequired) {
		return nil, &ApplyError{"upgrade_required", err}
	}
	if err != nil {
		return nil, &ApplyError{"decode", err}
	}
	if floor := d.acceptedGeneration(); st.Generation < floor {
		return nil, &ApplyError{"replay", fmt.Errorf("state generation %d is older than generation %d, which this node applied already (an old state put back?)", st.Generation, floor)}
	}
	return st, nil
}

// refuseState records a state the node will not use: the apply failure,
// and state_error in the report until a good state arrives.
func (d *Daemon) refuseState(gen int64, ae *ApplyError) error {
	now := time.Now().UTC()
	var ue *cluster.UpgradeRequiredError
	need := ""
	if errors.As(ae.Err, &ue) {
		need = ue.Need
	}
	d.rep.update(func(s *report.Status) { s.StateError, s.StateErrorAt, s.UpgradeRequired = ae.Error(), &now, need })
	return d.fail(gen, ae)
}

// stateOK clears state_error: a state verified and not older than the
// applied one arrived.
func (d *Daemon) stateOK() {
	cleared := false
	d.rep.update(func(s *report.Status) {
		if s.StateError != "" || s.UpgradeRequired != "" {
			s.StateError, s.StateErrorAt, s.UpgradeRequired, cleared = "", nil, "", true
		}
	})
	if cleared {
		d.rep.kick()
	}
}

// acceptedGeneration is the newest generation this node applied (or
// found in its accepted-state file at start): the floor below which a
// state is a replay.
func (d *Daemon) acceptedGeneration() int64 {
	d.amu.Lock()
	defer d.amu.Unlock()
	return d.accepted
}

// keepAccepted stores the raw object of a state the node applied in
// pull.json's accepted_state_file (0600), when its generation is new.
// Only the poll loop calls it (keptGen is the loop's).
func (d *Daemon) keepAccepted(set Settings, st *cluster.State, raw []byte) {
	// Any generation newly applied: above the kept one, or below it once
	// the floor started over for another store (Reconfigure).
	if set.AcceptedStateFile == "" || st.Generation == d.keptGen {
		return
	}
	if err := writeFileAtomic(set.AcceptedStateFile, raw, 0o600); err != nil {
		d.log.Warn("keep the accepted state", "path", set.AcceptedStateFile, "err", err)
		return
	}
	d.keptGen = st.Generation
}

// loadAccepted reads the accepted-state file at start: its generation is
// the floor until a newer state is applied. A missing file is a first
// start; an unreadable or unverifiable one is logged and ignored (the
// floor is then the first state applied).
func (d *Daemon) loadAccepted(set Settings) {
	if set.AcceptedStateFile == "" {
		return
	}
	b, err := os.ReadFile(set.AcceptedStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var st *cluster.State
		if st, err = cluster.DecodeSignedNode(b, d.stateKey, d.version); err == nil && st.Name == set.Cluster {
			d.accepted, d.keptGen = st.Generation, st.Generation
			return
		}
		if err == nil {
			err = fmt.Errorf("a state of cluster %q", st.Name)
		}
	}
	d.log.Warn("accepted-state file not used", "path", set.AcceptedStateFile, "err", err)
}
