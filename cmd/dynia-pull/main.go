// Command dynia-pull runs on every node of a dynia cluster: it polls the
// cluster's state object and converges HAProxy and keepalived on it.
// See docs/pull.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/agnivade/levenshtein"
	"golang.org/x/sys/unix"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/pull"
	"github.com/dynia/dynia/internal/render"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes. `once` reports what it did through them.
const (
	exitOK      = 0  // success; for once: nothing changed
	exitFailed  = 1  // the command failed (for once: nothing was applied)
	exitUsage   = 2  // bad flags or arguments
	exitChanged = 10 // once: new files were installed and daemons reloaded
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: dynia-pull <command> [flags]

commands:
  run                          poll the state object and converge this node (the daemon)
  once                         apply once; exit 0 unchanged, 10 changed, 1 failed
  render --state FILE --node ID [--mesh=false]  print the files this node would write; no reload
  check                        check config, credentials, bucket and tools
  version                      print the version (also --version)

dynia-pull <command> -h lists the command's flags.
`

// Main runs one command and returns its exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "-version", "--version":
		cmd = "version"
	}
	if !slices.Contains(commands, cmd) {
		fmt.Fprintf(stderr, "dynia-pull: unknown command %q%s\n%s", cmd, suggest(cmd), usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("dynia-pull "+cmd, flag.ContinueOnError)
	// The flag package's messages go to a buffer: to stdout for -h, to
	// stderr for a bad flag.
	var flagOut bytes.Buffer
	fs.SetOutput(&flagOut)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dynia-pull %s [flags]\n", cmd)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", nodeconfig.DefaultPath, "node config file (pull.json)")
	var statePath, nodeID, runDir, iface string
	var meshVRRP bool
	if cmd == "render" {
		fs.StringVar(&statePath, "state", "", "state JSON file (required)")
		fs.StringVar(&nodeID, "node", "", "node id to render for (required)")
		fs.StringVar(&runDir, "run-dir", pull.DefaultRunDir, "run dir for sockets, pid files and fifo")
		fs.StringVar(&iface, "interface", "", "VRRP interface (default "+nodeconfig.DefaultMeshInterface+", or "+render.DefaultInterface+" with --mesh=false)")
		fs.BoolVar(&meshVRRP, "mesh", true, "VRRP over the WireGuard mesh (false: over the VPC interface, as with mesh_disabled)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = flagOut.WriteTo(stdout)
			return exitOK
		}
		_, _ = flagOut.WriteTo(stderr)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dynia-pull %s: unexpected arguments %q\n", cmd, fs.Args())
		return exitUsage
	}
	// dynia-pull's own lines also go to a ring whose tail `run` uploads
	// for `dynia node logs`.
	ring := pull.NewRing()
	log, level := newLogger(stderr, ring)

	switch cmd {
	case "run":
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reload := make(chan struct{})
		fwdCtx, stopFwd := context.WithCancel(ctx)
		fwdDone := make(chan struct{})
		go func() { defer close(fwdDone); forwardHUP(fwdCtx, hup, reload) }()
		err := pull.Run(ctx, pull.RunOptions{ConfigPath: *configPath, Logger: log, Level: level, Version: version, Reload: reload, Logs: ring})
		stopFwd()
		<-fwdDone
		if err != nil {
			log.Error("dynia-pull stopped", "err", err)
			return exitFailed
		}
		return exitOK
	case "once":
		res, err := pull.Once(ctx, *configPath, log, level, version)
		switch {
		case err != nil:
			fmt.Fprintln(stderr, "dynia-pull once:", strings.ReplaceAll(err.Error(), "\n", " "))
			return exitFailed
		case res == pull.Changed:
			return exitChanged
		}
		return exitOK
	case "render":
		if statePath == "" || nodeID == "" {
			fmt.Fprintln(stderr, "dynia-pull render: --state and --node are required")
			return exitUsage
		}
		return renderCmd(statePath, render.Local{NodeID: nodeID, RunDir: runDir, Interface: iface, Mesh: meshVRRP}, stdout, stderr)
	case "check":
		if err := pull.Check(ctx, *configPath, stdout); err != nil {
			fmt.Fprintln(stderr, "dynia-pull check:", err)
			return exitFailed
		}
		return exitOK
	case "version":
		fmt.Fprintln(stdout, "dynia-pull", version)
		return exitOK
	}
	fmt.Fprintf(stderr, "dynia-pull: unknown command %q\n%s", cmd, usage) // a command in commands not handled above
	return exitUsage
}

// commands are dynia-pull's commands, as in usage.
var commands = []string{"run", "once", "render", "check", "version"}

// suggest is "; did you mean X?" for the command nearest to a mistyped
// one, at most 2 edits away (cobra's distance, as in dynia), or "".
func suggest(typo string) string {
	best, bestD := "", 3
	for _, c := range commands {
		if d := levenshtein.ComputeDistance(typo, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + best + "?"
}

func renderCmd(statePath string, l render.Local, stdout, stderr io.Writer) int {
	b, err := os.ReadFile(statePath)
	if err == nil {
		var st *cluster.State
		// A signed object (as fetched from the bucket) or a bare document;
		// a local file is rendered without checking its signature.
		if st, err = cluster.DecodeSignedNode(b, nil, version); err == nil {
			var res *render.Result
			if res, err = render.Render(st, l); err == nil {
				fmt.Fprintf(stdout, "==> haproxy.cfg <==\n%s\n==> keepalived.conf <==\n%s", res.HAProxy.Content, res.Keepalived.Content)
				return exitOK
			}
		}
	}
	fmt.Fprintln(stderr, "dynia-pull render:", err)
	return exitFailed
}

// forwardHUP turns each SIGHUP into a reload request until ctx ends; a
// request nobody takes any more does not keep it running.
func forwardHUP(ctx context.Context, hup <-chan os.Signal, reload chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// newLogger logs JSON unless w is a terminal; ring gets the JSON lines too.
// The level starts at info and follows pull.json's log_level (the
// returned LevelVar, which pull sets); DYNIA_PULL_DEBUG=1 fixes it at
// debug, and the LevelVar is then nil.
func newLogger(w io.Writer, ring io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("DYNIA_PULL_DEBUG") != "" {
		opts.Level = slog.LevelDebug
		level = nil
	}
	if f, ok := w.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return slog.New(teeHandler{slog.NewTextHandler(w, opts), slog.NewJSONHandler(ring, opts)}), level
		}
	}
	return slog.New(slog.NewJSONHandler(io.MultiWriter(w, ring), opts)), level
}

// teeHandler sends each record to two handlers (a terminal's text and the
// ring's JSON).
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	errA := t.a.Handle(ctx, r.Clone())
	errB := t.b.Handle(ctx, r)
	return errors.Join(errA, errB)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}
