package cli

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/dosim"
)

// completions runs `dynia __complete ARGS` (what the shell scripts call)
// and returns the candidates and the directive line (":4" is
// ShellCompDirectiveNoFileComp).
func (e *setupEnv) completions(args ...string) ([]string, string) {
	e.t.Helper()
	r := e.mustRun("", append([]string{"__complete"}, args...)...)
	var got []string
	directive := ""
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			directive = l
		case l != "":
			got = append(got, l)
		}
	}
	return got, directive
}

// TestCompletion: cluster names from the state bucket for --name, node ids
// of the cluster in --name for --node, contexts for --context and for
// `context use|delete`; an unreachable bucket or an unknown cluster
// completes nothing, without an error; `completion bash|zsh|fish` print
// their scripts.
func TestCompletion(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	e.sim.AddToken(nodeToken, dosim.NodeScopes()...)
	e.sim.RegisterImage(dosim.Image{Name: "dynia-node-test-1", Regions: []string{"sgp1"}, CreatedAt: time.Now().Add(-time.Hour)})
	e.env = map[string]string{"DIGITALOCEAN_ACCESS_TOKEN": fullToken, "DYNIA_JOURNAL_DIR": filepath.Join(e.dir, "journal")}
	nodeTok := writeSecret(t, e.dir, "node-token", nodeToken, 0o600)
	state := "file://" + filepath.Join(e.dir, "state")
	e.mustRun("", "context", "create", "local", "--state", state, "--node-token-file", nodeTok)
	e.mustRun("", "context", "create", "other", "--state", state)
	for _, name := range []string{"shop", "blog"} {
		e.mustRun("", "node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb", "--no-wait")
	}
	store, err := NewFactoryForSetup(e).Store(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := store.Load(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 {
		t.Fatalf("shop has %d nodes, want 1", len(st.Nodes))
	}
	shopNode := st.Nodes[0].ID

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"cluster names", []string{"node", "list", "--name", ""}, []string{"blog", "shop"}},
		{"cluster names by prefix", []string{"cluster", "get", "--name", "sh"}, []string{"shop"}},
		{"cluster names, app command", []string{"app", "deploy", "--name", ""}, []string{"blog", "shop"}},
		{"not for a new cluster", []string{"node", "create-ha", "--name", ""}, nil},
		{"node ids", []string{"node", "remove", "--name", "shop", "--node", ""}, []string{shopNode}},
		{"node ids need --name", []string{"node", "remove", "--node", ""}, nil},
		{"node ids of an unknown cluster", []string{"node", "remove", "--name", "nope", "--node", ""}, nil},
		{"contexts", []string{"node", "list", "--context", ""}, []string{"local", "other"}},
		{"clusters of --context's state", []string{"--context", "other", "node", "list", "--name", "b"}, []string{"blog"}},
		{"contexts by prefix", []string{"cluster", "list", "--context", "o"}, []string{"other"}},
		{"context use", []string{"context", "use", ""}, []string{"local", "other"}},
		{"context delete, one argument", []string{"context", "delete", "local", ""}, nil},
		{"bucket without credentials", []string{"--state", "s3://b/p", "--spaces-endpoint", "http://127.0.0.1:1", "node", "list", "--name", ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := e.completions(tc.args...)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("__complete %v (-want +got):\n%s", tc.args, d)
			}
			if directive != ":4" {
				t.Errorf("__complete %v: directive %q, want :4 (no file completion)", tc.args, directive)
			}
		})
	}

	// A bucket that accepts connections and never answers: the
	// completion's own timeout ends the wait, and nothing is offered.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	spaces := writeSecret(t, e.dir, "spaces.json", `{"access_key_id":"id","secret_access_key":"secret"}`, 0o600)
	e.mustRun("", "context", "create", "silent", "--state", "s3://b/p", "--spaces-endpoint", "http://"+ln.Addr().String(),
		"--spaces-credentials-file", spaces)
	got, _ := e.completions("--context", "silent", "node", "list", "--name", "")
	if len(got) != 0 {
		t.Errorf("silent bucket: completions %q, want none", got)
	}

	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := e.mustRun("", "completion", sh)
		if !strings.Contains(r.stdout, "__complete") {
			t.Errorf("completion %s: the script does not call __complete:\n%.300s", sh, r.stdout)
		}
	}
}

// NewFactoryForSetup builds a Factory on e's config and environment.
func NewFactoryForSetup(e *setupEnv) *Factory {
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: os.Stderr, ErrOut: os.Stderr})
	f.Getenv = func(k string) string { return e.env[k] }
	f.Global.ConfigPath = e.cfg
	return f
}
