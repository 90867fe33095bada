package cli

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/sandbox"
)

// sandboxParent is `dynia sandbox` as NewCmdSandbox builds it (its
// persistent --dir) around one subcommand.
func sandboxParent(sub *cobra.Command) *cobra.Command {
	parent := &cobra.Command{Use: "sandbox", SilenceUsage: true, SilenceErrors: true}
	parent.PersistentFlags().String("dir", sandbox.DefaultDir, "sandbox state directory")
	parent.SetOut(&bytes.Buffer{})
	parent.SetErr(&bytes.Buffer{})
	parent.AddCommand(sub)
	return parent
}

// TestNewCmdSandboxArgv: each sandbox subcommand turns argv (with the
// parent's --dir) into the options its run function gets, without root
// and without touching the directory.
func TestNewCmdSandboxArgv(t *testing.T) {
	t.Parallel()
	f := &Factory{}
	var got any
	capture := func(o any) error { got = o; return nil }
	for _, tc := range []struct {
		name string
		cmd  *cobra.Command
		argv []string
		want any
	}{
		{"up", NewCmdSandboxUp(f, func(o *sandbox.Options) error { return capture(*o) }),
			[]string{"--dir", "/tmp/lfn-x", "up", "--action-delay", "2s", "--extra-image", "dynia-node-b", "--runtime", "process", "--firewalls", "off"},
			sandbox.Options{Dir: "/tmp/lfn-x", Version: Version, PublicRange: "198.51.100.0/24", ActionDelay: 2 * time.Second,
				ExtraImages: []string{"dynia-node-b"}, Runtime: "process", Firewalls: "off"}},
		{"status default dir", NewCmdSandboxStatus(f, func(o *SandboxDirOptions) error { return capture(*o) }),
			[]string{"status"}, SandboxDirOptions{Dir: sandbox.DefaultDir}},
		{"down", NewCmdSandboxDown(f, func(o *SandboxDirOptions) error { return capture(*o) }),
			[]string{"down", "--dir", "/tmp/lfn-y"}, SandboxDirOptions{Dir: "/tmp/lfn-y"}},
		{"logs", NewCmdSandboxLogs(f, func(o *SandboxLogsOptions) error { return capture(*o) }),
			[]string{"logs", "web-1", "--component", "haproxy"}, SandboxLogsOptions{Dir: sandbox.DefaultDir, Droplet: "web-1", Component: "haproxy"}},
		{"demo-app", NewCmdSandboxDemoApp(f, func(o *SandboxDemoAppOptions) error { return capture(*o) }),
			[]string{"demo-app", "--listen", ":9000", "--id", "misty-owl"}, SandboxDemoAppOptions{Listen: ":9000", ID: "misty-owl"}},
		{"fault cut", NewCmdSandboxFaultCut(f, func(o *SandboxCutOptions) error { return capture(*o) }),
			[]string{"cut", "3164444", "vrrp"}, SandboxCutOptions{Dir: sandbox.DefaultDir, Droplet: "3164444", Target: "vrrp"}},
		{"fault heal all", NewCmdSandboxFaultHeal(f, func(o *SandboxCutOptions) error { return capture(*o) }),
			[]string{"heal", "web-2"}, SandboxCutOptions{Dir: sandbox.DefaultDir, Droplet: "web-2"}},
		{"fault bucket", NewCmdSandboxFaultBucket(f, func(o *SandboxBucketOptions) error { return capture(*o) }),
			[]string{"bucket", "down"}, SandboxBucketOptions{Dir: sandbox.DefaultDir, Down: true}},
		{"fault kill", NewCmdSandboxFaultKill(f, func(o *SandboxKillOptions) error { return capture(*o) }),
			[]string{"kill", "3164444", "keepalived"}, SandboxKillOptions{Dir: sandbox.DefaultDir, Droplet: "3164444", Component: "keepalived"}},
		{"fault list", NewCmdSandboxFaultList(f, func(o *SandboxFaultListOptions) error { return capture(*o) }),
			[]string{"list"}, SandboxFaultListOptions{Dir: sandbox.DefaultDir}},
	} {
		got = nil
		root := sandboxParent(tc.cmd)
		root.SetArgs(tc.argv)
		if err := root.Execute(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: options (-want +got):\n%s", tc.name, d)
		}
	}
}
