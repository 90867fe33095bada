package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// NewCmdApp is `dynia app deploy|status|history|rollback`.
func NewCmdApp(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Deploy the app's container to every node, one node at a time, and roll it back",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdAppDeploy(f, nil), NewCmdAppStatus(f), NewCmdAppHistory(f), NewCmdAppRollback(f, nil))
	return cmd
}

// AppOptions are the app flags of `app deploy` and `node create-ha`.
type AppOptions struct {
	Image            string
	Port             int
	Env              []string
	EnvFile          string
	SecretEnv        []string
	SecretEnvFile    string
	HealthPath       string
	RegistryAuthFile string
	Soak             time.Duration
	HealthTimeout    time.Duration
}

// addAppFlags puts the app flags on cmd.
func addAppFlags(cmd *cobra.Command, o *AppOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.Image, "image", "", "the app's image, by tag or digest (resolved to a digest: every node runs the same bytes)")
	fl.IntVar(&o.Port, "port", cluster.DefaultAppPort, "the port the app listens on inside its container")
	fl.StringArrayVar(&o.Env, "env", nil, "environment K=V (repeatable; shown by app history)")
	fl.StringVar(&o.EnvFile, "env-file", "", "file of K=V lines (# comments)")
	fl.StringArrayVar(&o.SecretEnv, "secret-env", nil, "secret environment K=V (repeatable; sealed with the cluster key, never shown; the value is in this command's arguments: prefer --secret-env-file)")
	fl.StringVar(&o.SecretEnvFile, "secret-env-file", "", "file (0600) of secret K=V lines (# comments), sealed like --secret-env")
	fl.StringVar(&o.HealthPath, "health-path", cluster.DefaultHealthPath, "path that answers 200 when the app is ready")
	fl.StringVar(&o.RegistryAuthFile, "registry-auth-file", "", "registry credentials: Docker's config.json or {\"username\",\"password\"} (mode 0600)")
	fl.DurationVar(&o.Soak, "soak", cluster.DefaultSoakSeconds*time.Second, "how long a node runs the release healthy before the next one starts it")
	fl.DurationVar(&o.HealthTimeout, "health-timeout", cluster.DefaultHealthTimeout, "how long a node waits for the release to answer its health path before it gives it up")
}

// release is the parsed app flags: what goes into the state, and the
// secrets to seal.
type release struct {
	ref     string
	rel     cluster.Release
	secrets secrets.Release
	authReg string
	soak    time.Duration
}

// parse checks every app flag before any I/O beyond reading the named files.
func (o *AppOptions) parse(insecure []string) (*release, error) {
	ref, err := parseImageRef(o.Image, insecure)
	if err != nil {
		return nil, err
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, usagef("--port %q: must be 1-65535", strconv.Itoa(o.Port))
	}
	if err := cluster.ValidateHealthPath(o.HealthPath); err != nil {
		return nil, usagef("--health-path %q: %v", o.HealthPath, err)
	}
	if o.Soak < 0 || o.Soak > time.Hour {
		return nil, usagef("--soak %q: must be 0 to 1h", o.Soak)
	}
	if o.HealthTimeout < time.Second || o.HealthTimeout > time.Hour {
		return nil, usagef("--health-timeout %q: must be 1s to 1h", o.HealthTimeout)
	}
	r := &release{ref: o.Image, rel: cluster.Release{Tag: o.Image, Port: o.Port, HealthPath: o.HealthPath}, soak: o.Soak}
	if o.HealthTimeout != cluster.DefaultHealthTimeout {
		r.rel.HealthTimeoutSeconds = int(o.HealthTimeout / time.Second)
	}
	env := map[string]string{}
	if o.EnvFile != "" {
		if err := readEnvFile("--env-file", o.EnvFile, env); err != nil {
			return nil, err
		}
	}
	for _, kv := range o.Env {
		if err := putEnv("--env", kv, env); err != nil {
			return nil, err
		}
	}
	sec := map[string]string{}
	if o.SecretEnvFile != "" {
		if err := checkPrivateFile("--secret-env-file", o.SecretEnvFile); err != nil {
			return nil, err
		}
		if err := readEnvFile("--secret-env-file", o.SecretEnvFile, sec); err != nil {
			return nil, err
		}
	}
	for _, kv := range o.SecretEnv {
		if err := putEnv("--secret-env", kv, sec); err != nil {
			return nil, err
		}
	}
	for k := range sec {
		if _, dup := env[k]; dup {
			return nil, usagef("--secret-env %q: also set by --env or --env-file", k)
		}
	}
	if len(env) > 0 {
		r.rel.Env = env
	}
	if len(sec) > 0 {
		r.secrets.Env = sec
	}
	r.authReg = ref.Context().RegistryStr()
	if r.secrets.RegistryAuth, err = loadRegistryAuth(o.RegistryAuthFile, r.authReg); err != nil {
		return nil, err
	}
	return r, nil
}

// putEnv adds K=V to env; the error names the flag and the key, never the
// value (it may be a secret).
func putEnv(flag, kv string, env map[string]string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok && strings.Contains(flag, "secret") {
		// Without "=", it may be the secret itself: never echo it.
		return usagef("%s: want K=V (got text without \"=\", not shown)", flag)
	}
	if !ok {
		return usagef("%s %q: want K=V", flag, k)
	}
	if err := cluster.ValidateEnvName(k); err != nil {
		return usagef("%s %q: %v", flag, k, err)
	}
	if err := cluster.ValidateEnvValue(v); err != nil {
		return usagef("%s %q: value %v", flag, k, err)
	}
	env[k] = v
	return nil
}

// readEnvFile reads K=V lines; errors name flag, the file and the line,
// and a key, never a value.
func readEnvFile(flag, path string, env map[string]string) error {
	fh, err := os.Open(path)
	if err != nil {
		return usagef("%s %q: %v", flag, path, errors.Unwrap(err))
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := putEnv(fmt.Sprintf("%s %s:%d", flag, path, n), strings.TrimPrefix(line, "export "), env); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return usagef("%s %q: %v", flag, path, err)
	}
	return nil
}

// DeployOptions are `app deploy`'s inputs.
type DeployOptions struct {
	Name    string
	App     AppOptions
	NoWait  bool
	Timeout time.Duration
}

// NewCmdAppDeploy is `dynia app deploy`.
func NewCmdAppDeploy(f *Factory, runF func(*DeployOptions) error) *cobra.Command {
	o := &DeployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy --name N --image REF [--port 8080] [--env K=V …] [--secret-env-file FILE] [--health-path /healthz]",
		Short: "Deploy a release: node by node, standbys first, each healthy before the next (zero failed requests)",
		Example: "  dynia app deploy --name myapp --image registry.example.com/shop:v2\n" +
			"  dynia app deploy --name myapp --image ghcr.io/acme/shop:v2 --secret-env-file db.env --registry-auth-file ~/.docker/config.json   # both 0600",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if err := checkTimeout(o.Timeout); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return deployApp(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	addAppFlags(cmd, &o.App)
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "write the release and return; nodes roll it out on their own")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 15*time.Minute, "how long to wait for the rollout")
	return cmd
}

func (f *Factory) insecureRegistries() []string {
	_, c, err := f.Config()
	if err != nil || c == nil {
		return nil
	}
	return c.InsecureRegistries
}

func deployApp(ctx context.Context, f *Factory, o *DeployOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r, err := o.App.parse(f.insecureRegistries())
	if err != nil {
		return err
	}
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	return releaseApp(ctx, f, p, store, cl, st, r, !o.NoWait)
}

// releaseApp resolves the image, seals the secrets, writes the release
// with its rollout order and, with wait, follows the rollout to its end.
func releaseApp(ctx context.Context, f *Factory, p *Progress, store *cluster.Store, cl *cloud.Client, st *cluster.State, r *release, wait bool) error {
	if r.rel.Image == "" {
		ref, err := parseImageRef(r.ref, f.insecureRegistries())
		if err != nil {
			return err
		}
		if d, ok := ref.(name.Digest); ok {
			// A digest names the bytes already; nodes pull it as it is.
			r.rel.Image = d.String()
		} else if err := p.Step("image "+r.ref, func() (string, error) {
			r.rel.Image, err = resolveDigest(ctx, ref, r.secrets.RegistryAuth)
			return r.rel.Image, err
		}); err != nil {
			return err
		}
	}
	if len(r.secrets.Env) > 0 || r.secrets.RegistryAuth != nil {
		if st.SecretsRecipient == "" {
			return fmt.Errorf("cluster %s has no cluster key to seal secrets with (it predates them): deploy without --secret-env/--registry-auth-file", st.Name)
		}
		sealed, err := secrets.SealRelease(st.SecretsRecipient, r.secrets)
		if err != nil {
			return err
		}
		r.rel.Sealed = sealed
	}
	order, err := rolloutOrder(ctx, cl, st)
	if err != nil {
		return err
	}
	var n int64
	if err := p.Step("release in the state", func() (string, error) {
		st, err = store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
			next, num, err := cluster.AddRelease(s, r.rel, order, int(r.soak/time.Second), time.Now())
			n = num
			return next, err
		})
		return fmt.Sprintf("release %d, order %s", n, strings.Join(order, " → ")), err
	}); err != nil {
		return err
	}
	if !wait {
		return printRelease(f, st, n)
	}
	return waitRollout(ctx, f, p, store, st.Name, n)
}

// rolloutOrder is standbys first, lowest priority first, and the node that
// holds the Reserved IP last (by the DO API; the state's active node when
// the API cannot say).
func rolloutOrder(ctx context.Context, cl *cloud.Client, st *cluster.State) ([]string, error) {
	holder := 0
	if a := st.Active(); a != nil {
		holder = a.DropletID
	}
	if st.ReservedIP != "" && cl != nil {
		if rip, err := cl.GetReservedIP(ctx, st.ReservedIP); err == nil {
			holder = rip.DropletID
		}
	}
	nodes := cluster.SortedByPriority(st.Nodes)
	slices.Reverse(nodes)
	var order, last []string
	for _, n := range nodes {
		if n.Lifecycle != cluster.Ready && n.Lifecycle != cluster.Provisioning {
			continue
		}
		if holder != 0 && n.DropletID == holder {
			last = append(last, n.ID)
			continue
		}
		order = append(order, n.ID)
	}
	return append(order, last...), nil
}

// waitRollout follows release n until every ready node runs it healthy, or
// a node reports it failed (exit 1, with each failing node's reason and
// last log lines; the old release keeps serving). It records the outcome.
func waitRollout(ctx context.Context, f *Factory, p *Progress, store *cluster.Store, name string, n int64) error {
	said := map[string]string{}
	var failed []string
	err := p.Step(fmt.Sprintf("nodes run release %d", n), func() (string, error) {
		return "", ops.PollUntil(ctx, func() (bool, string, error) {
			st, _, err := store.Load(ctx, name)
			if err != nil {
				return false, "", err
			}
			if st.App.Current != n {
				return false, "", fmt.Errorf("release %d was superseded by release %d", n, st.App.Current)
			}
			var waiting []string
			failed = failed[:0]
			for _, node := range st.Nodes {
				if node.Lifecycle != cluster.Ready {
					continue
				}
				r, refused, err := ops.ReadReport(ctx, store, st, node.ID)
				if err != nil {
					return false, "", err
				}
				phase := appPhase(r, n)
				if refused != "" {
					phase = "report not believed: " + refused
				}
				if said[node.ID] != phase {
					said[node.ID] = phase
					p.Info("  %s: %s", node.ID, phase)
				}
				switch {
				case r != nil && r.App != nil && r.App.FailedRelease == n:
					failed = append(failed, node.ID)
				case r == nil || r.App == nil || r.App.Release != n || !r.App.Healthy:
					waiting = append(waiting, node.ID)
				}
			}
			if len(failed) > 0 {
				return true, "", nil
			}
			return len(waiting) == 0, "waiting for " + strings.Join(waiting, ", "), nil
		})
	})
	if err != nil {
		return err
	}
	outcome := cluster.OutcomeRolledOut
	if len(failed) > 0 {
		outcome = cluster.OutcomeFailed
	}
	st, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.SetOutcome(s, n, outcome) })
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		for _, id := range failed {
			r, _, _ := ops.ReadReport(ctx, store, st, id)
			if r == nil || r.App == nil {
				continue
			}
			fmt.Fprintf(f.IO.ErrOut, "%s: release %d failed: %s\n", id, n, r.App.Error)
			for _, l := range r.App.Logs {
				fmt.Fprintf(f.IO.ErrOut, "  %s | %s\n", id, l)
			}
		}
		return fmt.Errorf("release %d failed on %s; the rollout halted and the old release keeps serving (`dynia app status --name %s`)",
			n, strings.Join(failed, ", "), name)
	}
	return printRelease(f, st, n)
}

// appPhase says where a node is with release n.
func appPhase(r *report.Status, n int64) string {
	switch {
	case r == nil:
		return "no report yet"
	case r.App == nil:
		return "no app runtime reported"
	case r.App.FailedRelease == n:
		return fmt.Sprintf("release %d failed: %s", n, r.App.Error)
	case r.App.Release == n && r.App.Healthy:
		return fmt.Sprintf("runs release %d, healthy", n)
	case r.App.State == report.AppStarting:
		return fmt.Sprintf("starting release %d", n)
	case r.App.State == report.AppWaiting:
		return "waiting " + r.App.Waiting
	}
	return fmt.Sprintf("runs release %d (%s)", r.App.Release, r.App.State)
}

func printRelease(f *Factory, st *cluster.State, n int64) error {
	r := st.App.Release(n)
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, releaseView(st, *r))
	}
	fmt.Fprintf(f.IO.Out, "cluster %s: release %d (%s) %s\n", st.Name, n, r.Image, dash(r.Outcome))
	return nil
}

// ReleaseView is a release as `app history -o json` shows it (secrets
// never: only whether there are any).
type ReleaseView struct {
	Number     int64     `json:"number"`
	Current    bool      `json:"current"`
	Image      string    `json:"image"`
	Tag        string    `json:"tag,omitempty"`
	Port       int       `json:"port"`
	HealthPath string    `json:"health_path"`
	EnvNames   []string  `json:"env,omitempty"`
	Secrets    bool      `json:"secrets"`
	Outcome    string    `json:"outcome,omitempty"`
	Note       string    `json:"note,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

func releaseView(st *cluster.State, r cluster.Release) ReleaseView {
	return ReleaseView{Number: r.Number, Current: r.Number == st.App.Current, Image: r.Image, Tag: r.Tag, Port: r.Port,
		HealthPath: r.HealthPath, EnvNames: slices.Sorted(maps.Keys(r.Env)), Secrets: r.Sealed != "", Outcome: r.Outcome,
		Note: r.Note, CreatedAt: r.CreatedAt}
}

// historyColumns are `app history`'s table.
var historyColumns = []column{
	{"Release", "RELEASE"}, {"Image", "IMAGE"}, {"Created", "CREATED"}, {"Outcome", "OUTCOME"}, {"Note", "NOTE"},
}

// NewCmdAppHistory is `dynia app history`.
func NewCmdAppHistory(f *Factory) *cobra.Command {
	var name string
	var to TableOptions
	cmd := &cobra.Command{
		Use:   "history --name N",
		Short: "The last releases, newest first (the current one starred)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			t, err := newTable(historyColumns, to)
			if err != nil {
				return err
			}
			store, err := f.Store(cmd.Context())
			if err != nil {
				return err
			}
			st, _, err := store.Load(cmd.Context(), name)
			if err != nil {
				return err
			}
			views := []ReleaseView{}
			for i := len(st.App.Releases) - 1; i >= 0; i-- {
				views = append(views, releaseView(st, st.App.Releases[i]))
			}
			if f.Global.Output == "json" {
				return writeJSON(f.IO.Out, views)
			}
			for _, v := range views {
				mark := " "
				if v.Current {
					mark = "*"
				}
				img := v.Tag
				if img == "" {
					img = v.Image
				}
				t.row(fmt.Sprintf("%s%d", mark, v.Number), img, v.CreatedAt.Local().Format(time.DateTime), dash(v.Outcome), dash(v.Note))
			}
			return t.write(f.IO.Out, f.IO.OutTTY)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name")
	addTableFlags(cmd, &to, historyColumns)
	return cmd
}

// AppNodeView is one node's app, as `app status` shows it.
type AppNodeView struct {
	Node          string     `json:"node"`
	Release       int64      `json:"release"`
	Image         string     `json:"image,omitempty"`
	State         string     `json:"state"`
	Healthy       bool       `json:"healthy"`
	Since         *time.Time `json:"since,omitempty"`
	Waiting       string     `json:"waiting,omitempty"`
	FailedRelease int64      `json:"failed_release,omitempty"`
	Error         string     `json:"error,omitempty"`
	Logs          []string   `json:"logs,omitempty"`
}

// appStatusColumns are `app status`'s table.
var appStatusColumns = []column{
	{"Node", "NODE"}, {"Release", "RELEASE"}, {"Image", "IMAGE"}, {"State", "STATE"}, {"Healthy", "HEALTHY"},
	{"Since", "SINCE"}, {"Note", "NOTE"},
}

// NewCmdAppStatus is `dynia app status`.
func NewCmdAppStatus(f *Factory) *cobra.Command {
	var name string
	var to TableOptions
	cmd := &cobra.Command{
		Use:   "status --name N",
		Short: "Per node: the release it runs, its image digest, health and since when; why a release failed there",
		Long: "Per node: the release it runs, its image digest, health and since when; why a release failed there.\n\n" +
			"A summary line comes before the table (not with --no-header) and a failed release's last log lines after it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			t, err := newTable(appStatusColumns, to)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			store, st, err := f.loadState(ctx, name)
			if err != nil {
				return err
			}
			var views []AppNodeView
			for _, n := range cluster.SortedByPriority(st.Nodes) {
				v := AppNodeView{Node: n.ID, State: "unknown"}
				r, refused, err := ops.ReadReport(ctx, store, st, n.ID)
				if refused != "" {
					v.Error = "report not believed: " + refused
				}
				if err == nil && r != nil && r.App != nil {
					a := r.App
					v = AppNodeView{Node: n.ID, Release: a.Release, Image: a.Image, State: a.State, Healthy: a.Healthy, Since: a.Since,
						Waiting: a.Waiting, FailedRelease: a.FailedRelease, Error: a.Error, Logs: a.Logs}
				}
				views = append(views, v)
			}
			if f.Global.Output == "json" {
				return writeJSON(f.IO.Out, map[string]any{"cluster": name, "current": st.App.Current, "rollout": st.App.Rollout, "nodes": views})
			}
			switch {
			case to.NoHeader:
			case st.App.Current == 0:
				fmt.Fprintf(f.IO.Out, "cluster %s: no release deployed yet (`dynia app deploy --name %s --image …`)\n", name, name)
			default:
				fmt.Fprintf(f.IO.Out, "cluster %s: current release %d (%s)\n", name, st.App.Current, st.App.CurrentRelease().Image)
			}
			for _, v := range views {
				since := "-"
				if v.Since != nil {
					since = time.Since(*v.Since).Round(time.Second).String()
				}
				note := v.Waiting
				if v.FailedRelease != 0 {
					note = fmt.Sprintf("release %d failed: %s", v.FailedRelease, v.Error)
				} else if v.Error != "" {
					note = v.Error
				}
				t.row(v.Node, strconv.FormatInt(v.Release, 10), shortDigest(v.Image), v.State, strconv.FormatBool(v.Healthy), since, dash(note))
			}
			if err := t.write(f.IO.Out, f.IO.OutTTY); err != nil {
				return err
			}
			for _, v := range views {
				if v.FailedRelease == 0 || len(v.Logs) == 0 {
					continue
				}
				fmt.Fprintf(f.IO.Out, "\nlast lines of release %d on %s:\n", v.FailedRelease, v.Node)
				for _, l := range v.Logs {
					fmt.Fprintln(f.IO.Out, "  "+l)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name")
	addTableFlags(cmd, &to, appStatusColumns)
	return cmd
}

// shortDigest is repo@sha256:<12 hex>.
func shortDigest(ref string) string {
	if repo, d, ok := strings.Cut(ref, "@sha256:"); ok && len(d) > 12 {
		return repo + "@" + d[:12]
	}
	return dash(ref)
}

// RollbackOptions are `app rollback`'s inputs.
type RollbackOptions struct {
	Name    string
	To      int64
	NoWait  bool
	Timeout time.Duration
}

// NewCmdAppRollback is `dynia app rollback`.
func NewCmdAppRollback(f *Factory, runF func(*RollbackOptions) error) *cobra.Command {
	o := &RollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback --name N [--to RELEASE]",
		Short: "Roll back to an earlier release (a new release with its image and settings), node by node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if o.To < 0 {
				return usagef("--to %q: must be a release number", strconv.FormatInt(o.To, 10))
			}
			if err := checkTimeout(o.Timeout); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return rollbackApp(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	cmd.Flags().Int64Var(&o.To, "to", 0, "release to go back to (default: the newest earlier release that rolled out)")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "write the release and return")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 15*time.Minute, "how long to wait for the rollout")
	return cmd
}

func rollbackApp(ctx context.Context, f *Factory, o *RollbackOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	var to *cluster.Release
	if o.To != 0 {
		if to = st.App.Release(o.To); to == nil || o.To == st.App.Current {
			return usagef("--to %d: not an earlier release of cluster %s (see `dynia app history --name %s`)", o.To, o.Name, o.Name)
		}
	} else {
		for i := len(st.App.Releases) - 1; i >= 0 && to == nil; i-- {
			if r := st.App.Releases[i]; r.Number < st.App.Current && r.Outcome != cluster.OutcomeFailed {
				to = &st.App.Releases[i]
			}
		}
		if to == nil {
			return usagef("--to: cluster %s has no earlier release to roll back to", o.Name)
		}
	}
	rel := *to
	rel.Env = maps.Clone(to.Env)
	rel.Note = fmt.Sprintf("rollback to %d", to.Number)
	p := NewProgress(f.IO, f.Global.Output == "json")
	return releaseApp(ctx, f, p, store, cl, st, &release{ref: rel.Tag, rel: rel, soak: cluster.DefaultSoakSeconds * time.Second}, !o.NoWait)
}
