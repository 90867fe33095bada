package cluster

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Release is one version of the app, as `dynia app deploy` (or rollback)
// wrote it. Releases are numbered from 1 in deploy order; a release that
// failed keeps its number. Every node runs the same bytes: Image is a
// digest, resolved by the CLI, never a tag.
type Release struct {
	Number int64 `json:"number"`
	// Image is the image by digest: <repository>@sha256:<64 hex>.
	Image string `json:"image"`
	// Tag is the reference the operator gave (e.g. registry/app:v2), shown
	// by `app history`; nodes never use it.
	Tag string `json:"tag,omitempty"`
	// Port is the TCP port the app listens on inside its container.
	Port int `json:"port"`
	// HealthPath answers 200 when the app is ready (GET, HTTP/1.1).
	HealthPath string `json:"health_path"`
	// HealthTimeoutSeconds is how long a node waits for a new instance to
	// answer 200 before it gives the release up (0: DefaultHealthTimeout).
	HealthTimeoutSeconds int `json:"health_timeout_seconds,omitempty"`
	// Env is the app's environment (not secret: shown by `app history`).
	Env map[string]string `json:"env,omitempty"`
	// Sealed holds the release's secrets (secret env values, registry
	// credentials) encrypted to the cluster key (age, armored): only nodes
	// and the operator's config hold the key.
	Sealed string `json:"sealed,omitempty"`
	// Note says where the release came from, e.g. "rollback to 3".
	Note string `json:"note,omitempty"`
	// Outcome is how its rollout ended, as the CLI that waited for it saw:
	// "" (unknown or in progress), OutcomeRolledOut or OutcomeFailed.
	Outcome   string    `json:"outcome,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Release outcomes.
const (
	OutcomeRolledOut = "rolled-out"
	OutcomeFailed    = "failed"
)

// Rollout is how the current release reaches the nodes: one node at a
// time in Order (standbys first, the Reserved IP's holder last); a node
// starts the release only when every node before it in Order reports it
// healthy for SoakSeconds. A node that cannot make it healthy keeps its old
// release and reports why, which halts the nodes after it: the cluster
// keeps serving.
type Rollout struct {
	Release     int64     `json:"release"`
	Order       []string  `json:"order"`
	SoakSeconds int       `json:"soak_seconds"`
	StartedAt   time.Time `json:"started_at"`
}

// Bounds of the app model.
const (
	// MaxReleases is how many releases the state keeps (the history
	// `app rollback` can go back to).
	MaxReleases = 10
	// DefaultSoakSeconds is how long a node must report a new release
	// healthy before the next node starts it.
	DefaultSoakSeconds = 5
	// DefaultHealthTimeout is how long a new instance may take to become
	// healthy.
	DefaultHealthTimeout = 60 * time.Second
	maxEnvValue          = 32 << 10
)

var (
	// digestRefRE: <repository>@sha256:<64 hex>, the repository as Docker
	// names it (lowercase path components, an optional registry host:port).
	digestRefRE = regexp.MustCompile(`^([a-z0-9.-]+(:[0-9]{1,5})?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*@sha256:[0-9a-f]{64}$`)
	// envNameRE is a portable environment variable name (POSIX).
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// ValidateImageDigest checks a repository@sha256:digest reference.
func ValidateImageDigest(ref string) error {
	if len(ref) > 512 || !digestRefRE.MatchString(ref) {
		return fmt.Errorf("not an image reference by digest (repository@sha256:<64 hex>)")
	}
	return nil
}

// ValidateEnvName checks an environment variable name.
func ValidateEnvName(name string) error {
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
	}
	return nil
}

// ValidateEnvValue checks an environment value: no NUL (which ends a
// C string), bounded.
func ValidateEnvValue(v string) error {
	if len(v) > maxEnvValue {
		return fmt.Errorf("longer than %d bytes", maxEnvValue)
	}
	for i := 0; i < len(v); i++ {
		if v[i] == 0 {
			return fmt.Errorf("contains a NUL byte")
		}
	}
	return nil
}

// Release returns release number n, or nil.
func (a *App) Release(n int64) *Release {
	for i := range a.Releases {
		if a.Releases[i].Number == n {
			return &a.Releases[i]
		}
	}
	return nil
}

// HealthTimeout is how long a node waits for the release to become healthy.
func (r *Release) HealthTimeout() time.Duration {
	if r.HealthTimeoutSeconds > 0 {
		return time.Duration(r.HealthTimeoutSeconds) * time.Second
	}
	return DefaultHealthTimeout
}

// CurrentRelease is the release nodes converge to, or nil (no app yet).
func (a *App) CurrentRelease() *Release { return a.Release(a.Current) }

// NextReleaseNumber is one more than every release ever made (the state
// keeps the last MaxReleases; their numbers only grow).
func (a *App) NextReleaseNumber() int64 {
	var n int64
	for _, r := range a.Releases {
		n = max(n, r.Number)
	}
	return max(n, a.Current) + 1
}

// AddRelease makes r (numbered here) the current release, rolled out in
// order with soak, and keeps the last MaxReleases. It returns the new state
// and the release number.
func AddRelease(s *State, r Release, order []string, soakSeconds int, now time.Time) (*State, int64, error) {
	next := s.Clone()
	r.Number = next.App.NextReleaseNumber()
	r.CreatedAt = now.UTC()
	r.Outcome = ""
	if r.HealthPath == "" {
		r.HealthPath = next.App.HealthPath
	}
	if r.Port == 0 {
		r.Port = DefaultAppPort
	}
	next.App.Releases = append(next.App.Releases, r)
	if over := len(next.App.Releases) - MaxReleases; over > 0 {
		next.App.Releases = next.App.Releases[over:]
	}
	next.App.Current = r.Number
	next.App.Rollout = &Rollout{Release: r.Number, Order: slices.Clone(order), SoakSeconds: soakSeconds, StartedAt: now.UTC()}
	if err := next.Validate(); err != nil {
		return nil, 0, err
	}
	return next, r.Number, nil
}

// SetOutcome records how release n's rollout ended; a finished rollout
// of the current release is cleared.
func SetOutcome(s *State, n int64, outcome string) (*State, error) {
	next := s.Clone()
	r := next.App.Release(n)
	if r == nil {
		return nil, fieldErr("release", fmt.Sprint(n), "no such release")
	}
	if r.Outcome == outcome && (next.App.Rollout == nil || next.App.Rollout.Release != n || outcome != OutcomeRolledOut) {
		return nil, ErrNoChange
	}
	r.Outcome = outcome
	if outcome == OutcomeRolledOut && next.App.Rollout != nil && next.App.Rollout.Release == n {
		next.App.Rollout = nil
	}
	return next, nil
}

func (a *App) clone() App {
	c := *a
	c.Releases = make([]Release, len(a.Releases))
	for i, r := range a.Releases {
		r.Env = cloneMap(r.Env)
		c.Releases[i] = r
	}
	if len(c.Releases) == 0 {
		c.Releases = nil
	}
	if a.Rollout != nil {
		ro := *a.Rollout
		ro.Order = slices.Clone(a.Rollout.Order)
		c.Rollout = &ro
	}
	return c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// validateApp checks the releases and the rollout.
func (s *State) validateApp() error {
	seen := map[int64]bool{}
	var last int64
	if len(s.App.Releases) > MaxReleases {
		return fieldErr("app.releases", fmt.Sprint(len(s.App.Releases)), "at most %d releases", MaxReleases)
	}
	for i, r := range s.App.Releases {
		f := func(name string) string { return fmt.Sprintf("app.releases[%d].%s", i, name) }
		if r.Number < 1 || r.Number <= last || seen[r.Number] {
			return fieldErr(f("number"), fmt.Sprint(r.Number), "must be positive and increasing")
		}
		seen[r.Number], last = true, r.Number
		if err := ValidateImageDigest(r.Image); err != nil {
			return fieldErr(f("image"), r.Image, "%v", err)
		}
		if len(r.Tag) > 512 {
			return fieldErr(f("tag"), r.Tag[:64]+"…", "longer than 512 bytes")
		}
		if r.Port < 1 || r.Port > 65535 {
			return fieldErr(f("port"), fmt.Sprint(r.Port), "must be 1-65535")
		}
		if err := ValidateHealthPath(r.HealthPath); err != nil {
			return fieldErr(f("health_path"), r.HealthPath, "%v", err)
		}
		for _, k := range slices.Sorted(maps.Keys(r.Env)) { // the same first problem on every read
			v := r.Env[k]
			if err := ValidateEnvName(k); err != nil {
				return fieldErr(f("env"), k, "%v", err)
			}
			if err := ValidateEnvValue(v); err != nil {
				return fieldErr(f("env."+k), "", "%v", err)
			}
		}
		if r.HealthTimeoutSeconds < 0 || r.HealthTimeoutSeconds > 3600 {
			return fieldErr(f("health_timeout_seconds"), fmt.Sprint(r.HealthTimeoutSeconds), "must be 0 (the default) to 3600")
		}
		if len(r.Sealed) > 256<<10 {
			return fieldErr(f("sealed"), "", "longer than 256 KiB")
		}
		switch r.Outcome {
		case "", OutcomeRolledOut, OutcomeFailed:
		default:
			return fieldErr(f("outcome"), r.Outcome, "must be %s or %s", OutcomeRolledOut, OutcomeFailed)
		}
	}
	if s.App.Current != 0 && !seen[s.App.Current] {
		return fieldErr("app.current", fmt.Sprint(s.App.Current), "names no release in app.releases")
	}
	if ro := s.App.Rollout; ro != nil {
		if ro.Release != s.App.Current {
			return fieldErr("app.rollout.release", fmt.Sprint(ro.Release), "must be the current release %d", s.App.Current)
		}
		if ro.SoakSeconds < 0 || ro.SoakSeconds > 3600 {
			return fieldErr("app.rollout.soak_seconds", fmt.Sprint(ro.SoakSeconds), "must be 0-3600")
		}
		ids := map[string]bool{}
		for i, id := range ro.Order {
			if err := ValidateNodeID(id); err != nil || ids[id] {
				return fieldErr(fmt.Sprintf("app.rollout.order[%d]", i), id, "must be distinct node ids")
			}
			ids[id] = true
		}
	}
	return nil
}
