package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cluster"
)

// argvCase is one command line of an argv table: the Options the command's
// flags parse to (want, when it runs), or the exit code it refuses them
// with (code, with msg in its one error line).
type argvCase[T any] struct {
	argv string // split on spaces: no value in these tables has one
	want *T
	code int
	msg  string
}

// testArgv builds the command with newCmd, its run function replaced by
// one that captures the Options (the NewCmdX(f, runF) seam, as cli/cli's
// commands are tested), runs each case's argv through it and compares the
// Options with go-cmp, or the exit code and message of the refusal. No
// config, store or API is touched: a command that refuses its flags does
// so before its run function.
func testArgv[T any](t *testing.T, newCmd func(*Factory, func(*T) error) *cobra.Command, cases []argvCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.argv, func(t *testing.T) {
			var out bytes.Buffer
			f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
			var got *T
			cmd := newCmd(f, func(o *T) error { got = o; return nil })
			typeUsageErrors(cmd)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(strings.Fields(tc.argv))
			err := cmd.ExecuteContext(t.Context())
			code := ExitOK
			if err != nil {
				code = exitCode(err)
			}
			if code != tc.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.code)
			}
			if tc.code != ExitOK {
				if got != nil {
					t.Errorf("the command ran with refused flags: %+v", *got)
				}
				if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tc.msg) {
					t.Errorf("error %q: want one line containing %q", msg, tc.msg)
				}
				return
			}
			if got == nil {
				t.Fatal("the command did not run")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Options (-want +got):\n%s", diff)
			}
		})
	}
}

// with returns a copy of o changed by edit: a row's Options are the
// defaults plus what its flags set.
func with[T any](o T, edit func(*T)) *T {
	edit(&o)
	return &o
}

func createDefaults() CreateOptions {
	return CreateOptions{
		DNS:     DNSOptions{Provider: cluster.DNSDigitalOcean},
		TLS:     TLSOptions{RenewBefore: cluster.DefaultRenewBefore},
		Timeout: 10 * time.Minute,
		App: AppOptions{Port: cluster.DefaultAppPort, HealthPath: cluster.DefaultHealthPath,
			Soak: cluster.DefaultSoakSeconds * time.Second, HealthTimeout: cluster.DefaultHealthTimeout},
	}
}

const createArgs = "--name shop --region sgp1 --size s-1vcpu-1gb"

func TestCreateHAArgv(t *testing.T) {
	base := with(createDefaults(), func(o *CreateOptions) { o.Name, o.Region, o.Size = "shop", "sgp1", "s-1vcpu-1gb" })
	testArgv(t, NewCmdNodeCreateHA, []argvCase[CreateOptions]{
		{argv: createArgs, want: base},
		{argv: createArgs + " --snapshot dynia-node-v1.4.0 --admin-cidr 192.0.2.0/24,198.51.100.7/32 --admin-cidr 2001:db8::/32 --dry-run --no-wait --timeout 90s",
			want: with(*base, func(o *CreateOptions) {
				o.Image, o.DryRun, o.NoWait, o.Timeout = "dynia-node-v1.4.0", true, true, 90*time.Second
				o.AdminCIDRs = []string{"192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"}
			})},
		{argv: createArgs + " --bootstrap --node-token-file /etc/dynia/node-token --allow-operator-token",
			want: with(*base, func(o *CreateOptions) {
				o.Bootstrap, o.NodeTokenFile, o.AllowOperatorToken = true, "/etc/dynia/node-token", true
			})},
		// --dns-zone completes a record named within it; --dns-domain is
		// its old name, kept and named in errors as typed.
		{argv: createArgs + " --dns-provider cloudflare --dns-record app --dns-zone example.com",
			want: with(*base, func(o *CreateOptions) {
				o.DNS = DNSOptions{Provider: cluster.DNSCloudflare, Record: "app.example.com", Zone: "example.com"}
			})},
		{argv: createArgs + " --dns-record app --dns-domain example.com",
			want: with(*base, func(o *CreateOptions) {
				o.DNSDomain = "example.com"
				o.DNS = DNSOptions{Provider: cluster.DNSDigitalOcean, Record: "app.example.com", Zone: "example.com", ZoneFlag: "dns-domain"}
			})},
		{argv: createArgs + " --domain app.example.com --domain www.example.com --email ops@example.com --staging --hsts --no-redirect --renew-before 720h",
			want: with(*base, func(o *CreateOptions) {
				o.TLS = TLSOptions{Domains: []string{"app.example.com", "www.example.com"}, Email: "ops@example.com", Staging: true,
					HSTS: true, NoRedirect: true, RenewBefore: 720 * time.Hour}
			})},
		{argv: createArgs + " --image registry.example.com/shop:v2 --port 9000 --env A=1 --env B=2,3 --health-path /ready --soak 30s",
			want: with(*base, func(o *CreateOptions) {
				o.App.Image, o.App.Port, o.App.Env, o.App.HealthPath, o.App.Soak = "registry.example.com/shop:v2", 9000, []string{"A=1", "B=2,3"}, "/ready", 30*time.Second
			})},

		{argv: "--region sgp1 --size s-1vcpu-1gb", code: ExitUsage, msg: "--name: required"},
		{argv: "--name Shop! --region sgp1 --size s-1vcpu-1gb", code: ExitUsage, msg: `--name "Shop!"`},
		{argv: "--name shop --size s-1vcpu-1gb", code: ExitUsage, msg: "--region: required"},
		{argv: "--name shop --region Singapore --size s-1vcpu-1gb", code: ExitUsage, msg: `--region "Singapore"`},
		{argv: "--name shop --region sgp1", code: ExitUsage, msg: "--size: required"},
		{argv: "--name shop --region sgp1 --size HUGE!", code: ExitUsage, msg: `--size "HUGE!"`},
		{argv: createArgs + " --admin-cidr 1.2.3.4", code: ExitUsage, msg: `--admin-cidr "1.2.3.4"`},
		{argv: createArgs + " --dns-provider route53 --dns-record app.example.com", code: ExitUsage, msg: `--dns-provider "route53"`},
		{argv: createArgs + " --dns-record App_1 --dns-zone example.com", code: ExitUsage, msg: `--dns-record "App_1"`},
		{argv: createArgs + " --dns-record app --dns-domain not_a_domain", code: ExitUsage, msg: `--dns-domain "not_a_domain"`},
		{argv: createArgs + " --domain app.example.com --email not-an-email", code: ExitUsage, msg: `--email "not-an-email"`},
		{argv: createArgs + " --domain app.example.com --staging --acme-url https://acme.example.com/dir", code: ExitUsage, msg: "--staging"},
		{argv: createArgs + " --domain app.example.com --renew-before 0s", code: ExitUsage, msg: "--renew-before"},
		{argv: createArgs + " --snapshot dynia-node-v1 --bootstrap", code: ExitUsage, msg: `--snapshot "dynia-node-v1"`},
		{argv: createArgs + " --timeout 0s", code: ExitUsage, msg: `--timeout "0s"`},
		{argv: createArgs + " --timeout soon", code: ExitUsage, msg: `"soon"`},
		{argv: createArgs + " --port eighty", code: ExitUsage, msg: `"eighty"`},
		{argv: createArgs + " --colour red", code: ExitUsage, msg: "unknown flag: --colour"},
		{argv: createArgs + " extra", code: ExitUsage, msg: `"extra"`},
	})
}

func TestAddArgv(t *testing.T) {
	def := AddOptions{Name: "shop", Count: 1, Timeout: 10 * time.Minute}
	testArgv(t, NewCmdNodeAdd, []argvCase[AddOptions]{
		{argv: "--name shop", want: &def},
		{argv: "--name shop --count 10 --node-token-file tok --allow-operator-token --timeout 1h --no-wait",
			want: &AddOptions{Name: "shop", Count: 10, NodeTokenFile: "tok", AllowOperatorToken: true, Timeout: time.Hour, NoWait: true}},
		{argv: "--count 2", code: ExitUsage, msg: "--name: required"},
		{argv: "--name shop --count 0", code: ExitUsage, msg: "--count 0"},
		{argv: "--name shop --count 11", code: ExitUsage, msg: "--count 11"},
		{argv: "--name shop --count two", code: ExitUsage, msg: `"two"`},
		{argv: "--name shop --timeout -1m", code: ExitUsage, msg: `--timeout "-1m0s"`},
	})
}

func TestRemoveArgv(t *testing.T) {
	testArgv(t, NewCmdNodeRemove, []argvCase[RemoveOptions]{
		{argv: "--name shop --node brave-panda --confirm",
			want: &RemoveOptions{Name: "shop", Node: "brave-panda", Confirm: true, Timeout: 5 * time.Minute}},
		{argv: "--name shop --node brave-panda --yes",
			want: &RemoveOptions{Name: "shop", Node: "brave-panda", Confirm: true, Timeout: 5 * time.Minute}},
		{argv: "--name shop --node brave-panda --confirm --force --timeout 30s",
			want: &RemoveOptions{Name: "shop", Node: "brave-panda", Confirm: true, Force: true, Timeout: 30 * time.Second}},
		// Not on a terminal (the test's input is not one): no prompt.
		{argv: "--name shop --node brave-panda", code: ExitUsage, msg: "--yes: required"},
		{argv: "--name shop --confirm", code: ExitUsage, msg: "--node"},
		{argv: "--name shop --node Brave_Panda --confirm", code: ExitUsage, msg: `--node "Brave_Panda"`},
	})
}

func TestMakeActiveArgv(t *testing.T) {
	testArgv(t, NewCmdNodeMakeActive, []argvCase[MakeActiveOptions]{
		{argv: "--name shop --node brave-panda", want: &MakeActiveOptions{Name: "shop", Node: "brave-panda", Timeout: 5 * time.Minute}},
		{argv: "--name shop --node brave-panda --timeout 2m", want: &MakeActiveOptions{Name: "shop", Node: "brave-panda", Timeout: 2 * time.Minute}},
		{argv: "--name shop", code: ExitUsage, msg: "--node"},
		{argv: "--node brave-panda", code: ExitUsage, msg: "--name: required"},
		{argv: "--name shop --node brave-panda --timeout 0s", code: ExitUsage, msg: "--timeout"},
	})
}

func TestRepairHAArgv(t *testing.T) {
	testArgv(t, NewCmdNodeRepairHA, []argvCase[RepairOptions]{
		{argv: "--name shop --check-only", want: &RepairOptions{Name: "shop", CheckOnly: true, Timeout: 5 * time.Minute}},
		{argv: "--name shop --force --node-token-file tok --allow-operator-token --timeout 1m",
			want: &RepairOptions{Name: "shop", Force: true, NodeTokenFile: "tok", AllowOperatorToken: true, Timeout: time.Minute}},
		{argv: "--name shop", code: ExitUsage, msg: "--check-only or --force"},
		{argv: "--name shop --check-only --force", code: ExitUsage, msg: "--check-only or --force"},
		{argv: "--check-only", code: ExitUsage, msg: "--name: required"},
	})
}

func TestNodeListArgv(t *testing.T) {
	testArgv(t, NewCmdNodeList, []argvCase[ListOptions]{
		{argv: "--name shop", want: &ListOptions{Name: "shop"}},
		{argv: "--name shop --format ID,Status --no-header", want: &ListOptions{Name: "shop", Table: TableOptions{Format: "ID,Status", NoHeader: true}}},
		{argv: "", code: ExitUsage, msg: "--name: required"},
		{argv: "--name shop --format ID,Colour", code: ExitUsage, msg: "Colour"},
		{argv: "--name shop --no-header=maybe", code: ExitUsage, msg: `"maybe"`},
	})
}

func TestNodeReplaceArgv(t *testing.T) {
	testArgv(t, NewCmdNodeReplace, []argvCase[ReplaceOptions]{
		{argv: "--name shop --node brave-panda",
			want: &ReplaceOptions{Name: "shop", Node: "brave-panda", HealthTimeout: 5 * time.Minute, Timeout: 10 * time.Minute}},
		{argv: "--name shop --node brave-panda --image 12345 --health-timeout 1m --node-token-file tok",
			want: &ReplaceOptions{Name: "shop", Node: "brave-panda", Image: "12345", HealthTimeout: time.Minute, NodeTokenFile: "tok", Timeout: 10 * time.Minute}},
		{argv: "--name shop --node brave-panda --image debian-12-x64", code: ExitUsage, msg: `--image "debian-12-x64"`},
		{argv: "--name shop --node brave-panda --image a/b", code: ExitUsage, msg: `--image "a/b"`},
		{argv: "--name shop --node brave-panda --health-timeout 0s", code: ExitUsage, msg: "--health-timeout"},
	})
}

func TestClusterUpgradeArgv(t *testing.T) {
	testArgv(t, NewCmdClusterUpgrade, []argvCase[UpgradeOptions]{
		{argv: "--name shop", want: &UpgradeOptions{Name: "shop", HealthTimeout: 5 * time.Minute, Timeout: 10 * time.Minute}},
		{argv: "--name shop --image dynia-node-v1.4.0 --allow-operator-token --timeout 20m",
			want: &UpgradeOptions{Name: "shop", Image: "dynia-node-v1.4.0", AllowOperatorToken: true, HealthTimeout: 5 * time.Minute, Timeout: 20 * time.Minute}},
		{argv: "--image dynia-node-v1.4.0", code: ExitUsage, msg: "--name: required"},
		{argv: "--name shop --image debian-12-x64", code: ExitUsage, msg: `--image "debian-12-x64"`},
		{argv: "--name shop --timeout 0s", code: ExitUsage, msg: "--timeout"},
	})
}

func TestAppDeployArgv(t *testing.T) {
	app := createDefaults().App
	testArgv(t, NewCmdAppDeploy, []argvCase[DeployOptions]{
		{argv: "--name shop --image registry.example.com/shop:v2",
			want: &DeployOptions{Name: "shop", App: *with(app, func(a *AppOptions) { a.Image = "registry.example.com/shop:v2" }), Timeout: 15 * time.Minute}},
		{argv: "--name shop --image shop@sha256:0123 --env A=1 --env-file app.env --secret-env K=v --secret-env-file s.env --registry-auth-file auth.json --health-timeout 2m --no-wait",
			want: &DeployOptions{Name: "shop", NoWait: true, Timeout: 15 * time.Minute, App: *with(app, func(a *AppOptions) {
				a.Image, a.Env, a.EnvFile, a.SecretEnv, a.SecretEnvFile = "shop@sha256:0123", []string{"A=1"}, "app.env", []string{"K=v"}, "s.env"
				a.RegistryAuthFile, a.HealthTimeout = "auth.json", 2*time.Minute
			})}},
		{argv: "--image shop:v2", code: ExitUsage, msg: "--name: required"},
		{argv: "--name shop --timeout 0s", code: ExitUsage, msg: "--timeout"},
		{argv: "--name shop --port http", code: ExitUsage, msg: `"http"`},
	})
}

func TestAppRollbackArgv(t *testing.T) {
	testArgv(t, NewCmdAppRollback, []argvCase[RollbackOptions]{
		{argv: "--name shop", want: &RollbackOptions{Name: "shop", Timeout: 15 * time.Minute}},
		{argv: "--name shop --to 3 --no-wait", want: &RollbackOptions{Name: "shop", To: 3, NoWait: true, Timeout: 15 * time.Minute}},
		{argv: "--name shop --to -1", code: ExitUsage, msg: `--to "-1"`},
		{argv: "--name shop --to latest", code: ExitUsage, msg: `"latest"`},
	})
}

// TestCommandGroupsBadInput: the commands without a run-function seam
// (cluster, tls, dns, app status/history) refuse bad flags the same way,
// through the whole tree against the hermetic environment: exit 2, one
// line naming the flag and the value, no DO API call and no bucket write.
func TestCommandGroupsBadInput(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		argv, want string
	}{
		{"cluster get", "--name: required"},
		{"cluster get --name Bad_Name", `--name "Bad_Name"`},
		{"cluster destroy --name shop", "--yes: required"},
		{"cluster update --name shop --admin-cidr 10.0.0.1", `--admin-cidr "10.0.0.1"`},
		{"cluster update --name shop --admin-cidr 10.0.0.0/8 --no-admin-cidr", "--no-admin-cidr"},
		{"tls enable --name shop", "--domain: required"},
		{"tls enable --name shop --domain bad_domain", `--domain "bad_domain"`},
		{"tls enable --name shop --domain app.example.com --email nobody", `--email "nobody"`},
		{"tls enable --name shop --domain app.example.com --acme-url ftp://ca.example.com", `--acme-url "ftp://ca.example.com"`},
		{"tls enable --name shop --domain app.example.com --renew-before -1h", "--renew-before"},
		{"tls status", "--name: required"},
		{"tls disable --name SHOP", `--name "SHOP"`},
		{"dns set --name shop --record app.example.com --provider route53", `--provider "route53"`},
		{"dns set --name shop --record app --zone not_a_zone", `--zone "not_a_zone"`},
		{"dns show", "--name: required"},
		{"dns delete --name Bad!", `--name "Bad!"`},
		{"app status", "--name: required"},
		{"app history --name Bad!", `--name "Bad!"`},
		{"app deploy --name shop --image shop:v2 --timeout 0s", "--timeout"},
	} {
		t.Run(tc.argv, func(t *testing.T) {
			calls, writes := len(e.sim.Calls()), e.writes.Load()
			r := e.run(strings.Fields(tc.argv)...)
			wantUsage(t, r, tc.want)
			if n := len(e.sim.Calls()) - calls; n != 0 {
				t.Errorf("%d API calls on bad input", n)
			}
			if n := e.writes.Load() - writes; n != 0 {
				t.Errorf("%d bucket writes on bad input", n)
			}
		})
	}
}
