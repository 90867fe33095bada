package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/sandbox"
	"github.com/dynia/dynia/internal/sandbox/demoapp"
)

// SandboxContext is the config context `sandbox up` writes and selects.
const SandboxContext = "sandbox"

// NewCmdSandbox is `dynia sandbox up|status|down|logs|fault` (plus the hidden
// serve and demo-app, which the sandbox itself runs).
func NewCmdSandbox(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "A simulated DigitalOcean on this Linux machine (root): try everything with no account",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	// Read by every subcommand (sandboxDir).
	cmd.PersistentFlags().String("dir", sandbox.DefaultDir, "sandbox state directory")
	cmd.AddCommand(NewCmdSandboxUp(f, nil))
	cmd.AddCommand(NewCmdSandboxStatus(f, nil))
	cmd.AddCommand(NewCmdSandboxDown(f, nil))
	cmd.AddCommand(NewCmdSandboxLogs(f, nil))
	cmd.AddCommand(NewCmdSandboxFault(f))
	cmd.AddCommand(NewCmdSandboxServe(f, nil))
	cmd.AddCommand(NewCmdSandboxDemoApp(f, nil))
	return cmd
}

// NewCmdSandboxUp is `dynia sandbox up`; runF gets the checked options
// (Dir and Version set).
func NewCmdSandboxUp(f *Factory, runF func(*sandbox.Options) error) *cobra.Command {
	o := &sandbox.Options{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the simulated cloud and make the `sandbox` context current",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Dir, o.Version = sandboxDir(cmd), Version
			if err := checkSandboxUp(o); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return sandboxUp(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.PublicRange, "public-range", "198.51.100.0/24", "simulated public range (Reserved and public IPs); must be unused on this machine")
	cmd.Flags().DurationVar(&o.ActionDelay, "action-delay", 0, "how long a simulated Reserved IP assignment takes")
	cmd.Flags().DurationVar(&o.ACMECertValidity, "acme-cert-validity", 0,
		"lifetime of certificates from the sandbox's ACME CA, whole seconds (0: Pebble's default, 90 days; short ones force renewals)")
	cmd.Flags().StringVar(&o.Firewalls, "firewalls", sandbox.DefaultFirewalls,
		"enforce the simulated DO cloud firewalls on droplet traffic, public and VPC side (enforce|off)")
	cmd.Flags().StringVar(&o.Runtime, "runtime", sandbox.DefaultRuntime,
		"how droplets run the app: docker (a dockerd per droplet, as on the node image) or process (no Docker)")
	cmd.Flags().StringSliceVar(&o.ExtraImages, "extra-image", nil,
		"`name` of another snapshot to offer (repeatable), newer than dynia-node-<version>, booting the same node binaries: an image for cluster upgrade")
	cmd.Flags().StringVar(&o.PullBinary, "pull-binary", "", "dynia-pull binary (default: next to dynia, else PATH)")
	cmd.Flags().BoolVar(&o.RequestLogs, "request-logs", false, "log every DO API request (logs/api-calls.log) and S3 request (logs/s3-access.log): the benchmarks count calls with them")
	cmd.Flags().StringVar(&o.Prefix, "prefix", "", "name prefix of namespaces and links (tests run several sandboxes)")
	_ = cmd.Flags().MarkHidden("prefix")
	return cmd
}

// checkSandboxUp checks up's flags, so bad input is exit 2 even without
// root. A range in use on this machine is found later, by Up (exit 1).
func checkSandboxUp(o *sandbox.Options) error {
	if _, err := sandbox.ParsePublicRange(o.PublicRange); err != nil {
		return usagef("--public-range %q: %v", o.PublicRange, err)
	}
	if o.ActionDelay < 0 {
		return usagef("--action-delay %q: must not be negative", o.ActionDelay)
	}
	if err := sandbox.CheckACMECertValidity(o.ACMECertValidity); err != nil {
		return usagef("--acme-cert-validity %q: %v", o.ACMECertValidity, err)
	}
	for _, im := range o.ExtraImages {
		if err := checkImageFlag(im); err != nil || im == "" {
			return usagef("--extra-image %q: must be a snapshot name (letters, digits, '.', '_', '-')", im)
		}
	}
	if _, err := sandbox.ParseFirewalls(o.Firewalls); err != nil {
		return usagef("--firewalls %q: %v", o.Firewalls, err)
	}
	rt, err := sandbox.ParseRuntime(o.Runtime)
	if err != nil {
		return usagef("--runtime %q: %v", o.Runtime, err)
	}
	if err := sandbox.CheckDir(o.Dir, rt); err != nil {
		return usagef("--dir %q: %v", o.Dir, err)
	}
	return nil
}

// sandboxUp starts the sandbox (root on Linux) and makes its context
// current.
func sandboxUp(ctx context.Context, f *Factory, o *sandbox.Options) error {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return usagef("sandbox up: needs root on Linux (network namespaces)")
	}
	o.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var info *sandbox.Info
	p := NewProgress(f.IO, f.Global.Output == "json")
	if err := p.Step("sandbox up", func() (string, error) {
		var err error
		info, err = sandbox.Up(ctx, *o)
		if err != nil {
			return "", err
		}
		return info.APIURL, nil
	}); err != nil {
		return err
	}
	if err := p.Step("context "+SandboxContext, func() (string, error) {
		return "", writeSandboxContext(f, info)
	}); err != nil {
		return err
	}
	return printSandbox(f, info)
}

// SandboxDirOptions are the options of sandbox commands that take only
// the sandbox's directory (status, down).
type SandboxDirOptions struct {
	Dir string
}

// NewCmdSandboxStatus is `dynia sandbox status`.
func NewCmdSandboxStatus(f *Factory, runF func(*SandboxDirOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the sandbox: API, S3, droplets, Reserved IPs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := &SandboxDirOptions{Dir: sandboxDir(cmd)}
			if runF != nil {
				return runF(o)
			}
			info, err := sandbox.Status(o.Dir)
			if err != nil {
				return err
			}
			return printSandbox(f, info)
		},
	}
}

// NewCmdSandboxDown is `dynia sandbox down`.
func NewCmdSandboxDown(f *Factory, runF func(*SandboxDirOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, route, process and file of the sandbox (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := &SandboxDirOptions{Dir: sandboxDir(cmd)}
			if runF != nil {
				return runF(o)
			}
			return sandboxDown(cmd.Context(), f, o)
		},
	}
}

// sandboxDown removes the sandbox and the context up wrote.
func sandboxDown(ctx context.Context, f *Factory, o *SandboxDirOptions) error {
	// The context's token and key files (written by up) go first, so
	// Down finds the directory as it left it.
	if err := os.RemoveAll(filepath.Join(o.Dir, "cli")); err != nil {
		return err
	}
	if err := sandbox.Down(ctx, o.Dir); err != nil {
		return err
	}
	if cfg, _, err := f.Config(); err == nil && cfg.Contexts[SandboxContext] != nil {
		delete(cfg.Contexts, SandboxContext)
		if cfg.CurrentContext == SandboxContext {
			cfg.CurrentContext = ""
		}
		if err := cfg.Save(); err != nil {
			return err
		}
	}
	fmt.Fprintln(f.IO.Out, "sandbox down")
	return nil
}

// SandboxLogsOptions are `dynia sandbox logs`'s.
type SandboxLogsOptions struct {
	Dir       string
	Droplet   string // id or name; "sandbox" for the cloud's own
	Component string // "" for all
}

// NewCmdSandboxLogs is `dynia sandbox logs DROPLET [--component C]`.
func NewCmdSandboxLogs(f *Factory, runF func(*SandboxLogsOptions) error) *cobra.Command {
	o := &SandboxLogsOptions{}
	cmd := &cobra.Command{
		Use:   "logs DROPLET",
		Short: "Print a droplet's logs (id or name; `sandbox` for the cloud's); --component haproxy|keepalived|pull|app|dockerd|containerd|cloud-init",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.Component {
			case "", "haproxy", "keepalived", "pull", "app", "dockerd", "containerd", "cloud-init", "serve", "versitygw", "registry", "pebble":
			default:
				return usagef("--component %q: must be haproxy, keepalived, pull, app, dockerd, containerd or cloud-init (droplets), serve, versitygw, registry or pebble (sandbox)", o.Component)
			}
			o.Dir, o.Droplet = sandboxDir(cmd), args[0]
			if runF != nil {
				return runF(o)
			}
			rc, err := sandbox.Logs(o.Dir, o.Droplet, o.Component)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(f.IO.Out, rc)
			return err
		},
	}
	cmd.Flags().StringVar(&o.Component, "component", "", "one component's log (default: all)")
	return cmd
}

// NewCmdSandboxServe is the hidden `dynia sandbox serve`, run by `sandbox
// up` inside the router namespace.
func NewCmdSandboxServe(f *Factory, runF func(*sandbox.ServeOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:    "serve",
		Hidden: true, // run by `sandbox up` inside the router namespace
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := &sandbox.ServeOptions{Dir: sandboxDir(cmd), Logger: slog.New(slog.NewJSONHandler(f.IO.ErrOut, nil))}
			if runF != nil {
				return runF(o)
			}
			return sandbox.Serve(cmd.Context(), *o)
		},
	}
}

// SandboxDemoAppOptions are the hidden `dynia sandbox demo-app`'s.
type SandboxDemoAppOptions struct {
	Listen string
	ID     string
}

// NewCmdSandboxDemoApp is the hidden `dynia sandbox demo-app`: the
// sandbox's stand-in app on every droplet (the process runtime's
// app_command).
func NewCmdSandboxDemoApp(_ *Factory, runF func(*SandboxDemoAppOptions) error) *cobra.Command {
	o := &SandboxDemoAppOptions{}
	cmd := &cobra.Command{
		Use:    "demo-app",
		Hidden: true, // the sandbox's stand-in app on every droplet (the process runtime's app_command)
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// dynia-pull's process runtime passes both in the environment
			// (nodeconfig.Config.AppCommand); flags win.
			if !cmd.Flags().Changed("listen") {
				if v := os.Getenv("DYNIA_APP_ADDR"); v != "" {
					o.Listen = v
				}
			}
			if !cmd.Flags().Changed("id") {
				o.ID = os.Getenv("DYNIA_NODE_ID")
			}
			if runF != nil {
				return runF(o)
			}
			return demoapp.Run(cmd.Context(), o.Listen, o.ID)
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", ":8080", "address (default: $DYNIA_APP_ADDR, else :8080)")
	cmd.Flags().StringVar(&o.ID, "id", "", "node id to answer with (default: $DYNIA_NODE_ID)")
	return cmd
}

// writeSandboxContext records the sandbox as context `sandbox` and makes it
// current, so `dynia node create-ha …` goes there with no other flags. The
// tokens and keys go to 0600 files the context names, not into the config.
func writeSandboxContext(f *Factory, info *sandbox.Info) error {
	cfg, _, err := f.Config()
	if err != nil {
		return err
	}
	secrets := filepath.Join(info.Dir, "cli")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return err
	}
	write := func(name string, b []byte) (string, error) {
		p := filepath.Join(secrets, name)
		return p, fsutil.WriteFileAtomic(p, b, 0o600)
	}
	tokFile, err := write("token", []byte(info.Token))
	if err != nil {
		return err
	}
	nodeTokFile, err := write("node-token", []byte(info.NodeToken))
	if err != nil {
		return err
	}
	cred, _ := json.Marshal(map[string]string{"access_key_id": info.AccessKeyID, "secret_access_key": info.SecretAccessKey})
	credFile, err := write("spaces.json", cred)
	if err != nil {
		return err
	}
	var cfTokFile string
	if info.CloudflareToken != "" {
		if cfTokFile, err = write("cloudflare-token", []byte(info.CloudflareToken)); err != nil {
			return err
		}
	}
	cfg.Contexts[SandboxContext] = &Context{
		State: info.StateURL, SpacesEndpoint: info.S3Endpoint, SpacesRegion: info.S3Region, PathStyle: true,
		SpacesCredentialsFile: credFile, APIURL: info.APIURL, TokenFile: tokFile, NodeTokenFile: nodeTokFile,
		MetadataURL: info.MetadataURL,
		// The sandbox's ACME CA and Cloudflare simulator (empty from a
		// sandbox older than them). The roots are file names: root.pem
		// is rewritten when Pebble restarts.
		ACMEDirectory: info.ACMEDirectory, ACMEDirectoryRoots: info.ACMEListenerCA, ACMETrustRoots: info.ACMERootCA,
		CloudflareAPIURL: info.CloudflareAPIURL, CloudflareTokenFile: cfTokFile,
	}
	if info.Registry != "" {
		// Plain HTTP: `app deploy --image <registry>/demo-app:v1` resolves
		// the tag there.
		cfg.Contexts[SandboxContext].InsecureRegistries = []string{info.Registry}
	}
	cfg.CurrentContext = SandboxContext
	return cfg.Save()
}

// printSandbox prints status; secrets are shown only in JSON (which tests
// and scripts read) and never in the text view.
func printSandbox(f *Factory, info *sandbox.Info) error {
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, info)
	}
	w := f.IO.Out
	state := "stopped"
	if info.Running {
		state = "running"
	}
	fmt.Fprintf(w, "sandbox %s (%s)\n  api:      %s\n  metadata: %s\n  s3:       %s (bucket %s)\n  state:    %s\n  image:    %s\n",
		state, info.Dir, info.APIURL, info.MetadataURL, info.S3Endpoint, info.Bucket, info.StateURL, info.Image)
	if info.Runtime != "" {
		fmt.Fprintf(w, "  runtime:  %s\n", info.Runtime)
	}
	if info.Registry != "" {
		fmt.Fprintf(w, "  registry: %s (plain HTTP)\n", info.Registry)
		for _, img := range info.Images {
			fmt.Fprintf(w, "    %s/%s:%s  %s\n", info.Registry, img.Name, img.Tag, img.Digest)
		}
	}
	for _, d := range info.Droplets {
		fmt.Fprintf(w, "  droplet %d %s %s private %s public %s (%s)\n", d.ID, d.Name, d.Status, d.PrivateIP, d.PublicIP, d.Namespace)
	}
	var rips []string
	for _, r := range info.ReservedIPs {
		rips = append(rips, fmt.Sprintf("%s→%d", r.IP, r.DropletID))
	}
	if len(rips) > 0 {
		fmt.Fprintf(w, "  reserved IPs: %s\n", strings.Join(rips, ", "))
	}
	if info.ACMEDirectory != "" {
		fmt.Fprintf(w, "  acme:     %s (listener CA %s, issuance root %s)\n  dns:      %s (zones: cloudflare %s, digitalocean %s)\n  cloudflare: %s (plain HTTP)\n",
			info.ACMEDirectory, info.ACMEListenerCA, info.ACMERootCA, info.DNSServer,
			info.DNSZones["cloudflare"], info.DNSZones["digitalocean"], info.CloudflareAPIURL)
	}
	return nil
}
