package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dynia/dynia/internal/cluster"
)

// scriptEnvKey is where Setup leaves a script's testEnv for its commands.
type scriptEnvKey struct{}

// TestScripts runs testdata/script/*.txtar: readable command sessions of
// dynia against the in-process DO simulator and a file:// state (newEnv),
// each script with an environment of its own. dynia runs in-process (as
// e.run does), so a script needs no binary, no root and no S3 server.
//
// Commands beside testscript's own:
//
//	dynia ARGS…            run dynia; fails unless it exits 0 (`! dynia` unless it does not)
//	exitcode N             the last dynia's exit code was N
//	fakenodes NAME         every node of cluster NAME reports itself up, as dynia-pull would, until the script ends
//	nodeid NAME ROLE VAR   set $VAR to the id of a node of cluster NAME with role ROLE (active, standby)
//	droplets N             the simulator holds N droplets
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			// The environment's cleanups run when TestScripts ends, after
			// every script.
			env.Values[scriptEnvKey{}] = &scriptEnv{e: newEnv(t)}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"dynia":     scriptDynia,
			"exitcode":  scriptExitCode,
			"fakenodes": scriptFakeNodes,
			"nodeid":    scriptNodeID,
			"droplets":  scriptDroplets,
		},
	})
}

type scriptEnv struct {
	e    *testEnv
	code int // the last dynia's exit code
}

func scriptEnvOf(ts *testscript.TestScript) *scriptEnv {
	return ts.Value(scriptEnvKey{}).(*scriptEnv)
}

func scriptDynia(ts *testscript.TestScript, neg bool, args []string) {
	s := scriptEnvOf(ts)
	r := s.e.run(args...)
	s.code = r.code
	_, _ = io.WriteString(ts.Stdout(), r.stdout)
	_, _ = io.WriteString(ts.Stderr(), r.stderr)
	switch {
	case neg && r.code == 0:
		ts.Fatalf("dynia %s: exit 0, want a failure", strings.Join(args, " "))
	case !neg && r.code != 0:
		ts.Fatalf("dynia %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
}

func scriptExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: exitcode N")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode %q: %v", args[0], err)
	}
	if got := scriptEnvOf(ts).code; got != want {
		ts.Fatalf("dynia exited %d, want %d", got, want)
	}
}

func scriptFakeNodes(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fakenodes NAME")
	}
	ts.Defer(scriptEnvOf(ts).e.fakeNodes(args[0]))
}

func scriptNodeID(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nodeid NAME ROLE VAR")
	}
	s := scriptEnvOf(ts)
	st, _, err := s.e.signedStore().Load(context.Background(), args[0])
	ts.Check(err)
	for _, n := range st.Nodes {
		if string(n.Role) == args[1] {
			ts.Setenv(args[2], n.ID)
			return
		}
	}
	ts.Fatalf("cluster %s has no %s node: %v", args[0], args[1], nodeRoles(st))
}

func nodeRoles(st *cluster.State) []string {
	var out []string
	for _, n := range st.Nodes {
		out = append(out, n.ID+"="+string(n.Role))
	}
	return out
}

func scriptDroplets(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: droplets N")
	}
	if got := fmt.Sprint(len(scriptEnvOf(ts).e.sim.Droplets())); got != args[0] {
		ts.Fatalf("%s droplets in the simulator, want %s", got, args[0])
	}
}
