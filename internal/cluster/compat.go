package cluster

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Compatibility between dynia versions (docs/state.md, "Compatibility").
// A cluster outlives the dynia that made it: nodes run the dynia-pull of
// the image they were created from while the operator upgrades the CLI.
// So within one schema_version a field is only ever added, optional, and
// a dynia-pull that does not know it ignores it (DecodeNode); a change an
// older dynia-pull cannot serve correctly raises the state's
// min_pull_version (or schema_version), and a dynia-pull below it keeps
// its last good config and reports "upgrade required". The CLI, which
// rewrites the whole document, refuses a state with fields it does not
// know (*NewerStateError) instead of dropping them on its next write.

// NewerStateError is a state the CLI cannot rewrite without losing parts
// of it: a field it does not know (Field, its path), or a schema_version
// above the one it writes (Field "schema_version").
type NewerStateError struct {
	Field string
	Value string // the schema_version, for that case
}

func (e *NewerStateError) Error() string {
	if e.Field == "schema_version" {
		return fmt.Sprintf("schema_version %q: unsupported by this dynia, which reads %d: state written by a newer dynia; upgrade the dynia CLI", e.Value, SchemaVersion)
	}
	return fmt.Sprintf("state written by a newer dynia (field %q is unknown to this one, which would drop it on its next write): upgrade the dynia CLI", e.Field)
}

// UpgradeRequiredError is a state this dynia-pull must not apply: it
// requires a newer dynia-pull (Need: the state's min_pull_version, or
// "schema_version N" when Schema, the state's schema_version, is above
// SchemaVersion). Have is this dynia-pull's version.
type UpgradeRequiredError struct {
	Need, Have string
	Schema     int
}

func (e *UpgradeRequiredError) Error() string {
	if e.Schema != 0 {
		return fmt.Sprintf("upgrade required: the state is schema_version %d, this dynia-pull (%s) reads %d; serving the last good config", e.Schema, e.Have, SchemaVersion)
	}
	return fmt.Sprintf("upgrade required: the state needs dynia-pull %s or newer, this is %s; serving the last good config", e.Need, e.Have)
}

// ErrUpgradeRequired matches every *UpgradeRequiredError (errors.Is).
var ErrUpgradeRequired = errors.New("upgrade required")

// Is makes errors.Is(err, ErrUpgradeRequired) hold.
func (e *UpgradeRequiredError) Is(target error) bool { return target == ErrUpgradeRequired }

// pullVersionRE is a min_pull_version: a release's version, vMAJOR.MINOR.PATCH.
var pullVersionRE = regexp.MustCompile(`^v(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$`)

// versionCoreRE is the release a build version starts with: git describe
// --tags prints v1.2.3, v1.2.3-4-gabcdef0 (4 commits after v1.2.3) or
// v1.2.3-dirty; all three count as v1.2.3.
var versionCoreRE = regexp.MustCompile(`^v?([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(?:$|[-+])`)

// ValidateMinPullVersion checks a min_pull_version: empty, or vMAJOR.MINOR.PATCH.
func ValidateMinPullVersion(v string) error {
	if v != "" && !pullVersionRE.MatchString(v) {
		return fieldErr("min_pull_version", v, "must be a release version like v1.4.0 (or empty)")
	}
	return nil
}

// versionCore parses the release a build version starts with; ok false
// for a version that names no release ("dev", a bare commit hash).
func versionCore(v string) (core [3]int, ok bool) {
	m := versionCoreRE.FindStringSubmatch(v)
	if m == nil {
		return core, false
	}
	for i := range core {
		core[i], _ = strconv.Atoi(m[i+1])
	}
	return core, true
}

// VersionBelow says whether the build version have is below the release
// version need ("" needs nothing). A build version is compared by the
// release it starts with (v1.2.3-4-gabcdef0 and v1.2.3-dirty are v1.2.3);
// one that names no release — "dev", a commit hash, "" — is a build from a
// source tree and counts as the newest: it is never below.
func VersionBelow(have, need string) bool {
	n, ok := versionCore(need)
	if !ok {
		return false
	}
	h, ok := versionCore(have)
	if !ok {
		return false
	}
	for i := range h {
		if h[i] != n[i] {
			return h[i] < n[i]
		}
	}
	return false
}

// MaxPullVersion is the higher of two min_pull_versions ("" is none).
func MaxPullVersion(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case VersionBelow(a, b):
		return b
	}
	return a
}

// SetMinPullVersion sets the state's min_pull_version (v validated; ""
// clears it). ErrNoChange when it is already v. Raising it makes every
// dynia-pull below v stop applying states (the CLI checks the nodes'
// reported versions before it writes such a state: internal/cli).
func SetMinPullVersion(s *State, v string) (*State, error) {
	if err := ValidateMinPullVersion(v); err != nil {
		return nil, err
	}
	if s.MinPullVersion == v {
		return nil, ErrNoChange
	}
	next := s.Clone()
	next.MinPullVersion = v
	return next, next.Validate()
}

// RaisesMinPullVersion says whether next requires a newer dynia-pull than
// cur: its min_pull_version is set and above cur's.
func RaisesMinPullVersion(cur, next *State) bool {
	switch {
	case next.MinPullVersion == "" || next.MinPullVersion == cur.MinPullVersion:
		return false
	case cur.MinPullVersion == "":
		return true
	}
	return VersionBelow(cur.MinPullVersion, next.MinPullVersion)
}
