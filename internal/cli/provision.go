package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/ops"
)

// The operations themselves live in internal/ops; this file builds what
// they need from the Factory (ops.Deps, ops.BootSpec) and turns their
// errors into the CLI's.

// SnapshotPrefix is the name prefix of node images built by packer/.
const SnapshotPrefix = ops.SnapshotPrefix

// BootstrapImage is the stock image --bootstrap droplets start from.
const BootstrapImage = ops.BootstrapImage

// NodeTokenScopes are the scopes of a least-privilege node token.
var NodeTokenScopes = ops.NodeTokenScopes

func resourceName(cluster string) string           { return ops.ResourceName(cluster) }
func vpcName(cluster, region string) string        { return ops.VPCName(cluster, region) }
func nodeTags(clusterName, nodeID string) []string { return ops.NodeTags(clusterName, nodeID) }

// Progress is a step reporter as the operations want one (bad input an
// operation finds, an *ops.InputError, prints no failure line: isUsage).
var _ ops.Reporter = (*Progress)(nil)

// deps are an operation's dependencies for this run: the store, the API
// client, the progress as its reporter, the nodes' reports as its watcher;
// boot when it creates droplets.
func deps(store *cluster.Store, cl *cloud.Client, p *Progress, boot *ops.BootSpec) ops.Deps {
	return ops.Deps{Store: store, Cloud: cl, Report: p, Boot: boot, Nodes: ops.ReportWatcher{Store: store, Report: p}}
}

// nodeTokenHint says, on one line, how to give nodes a token of their own.
var nodeTokenHint = ops.NodeTokenHint

// loadNodeToken returns the DO token droplets get: tokenFile (the flag),
// else the context's node_token_file. Without one, droplets get the CLI's
// own token only when that is allowed (allow, or allow_operator_token in
// the context), with a warning; otherwise it is bad input (exit 2),
// reported before any API call. A node token file must be 0600 and must not
// hold the CLI's own token. A command reads it once and hands that token
// on (ops.BootSpec), so the droplets get the token that was checked even if
// the file is replaced meanwhile.
func loadNodeToken(f *Factory, tokenFile string, allow bool, p *Progress) (string, error) {
	_, c, err := f.Config()
	if err != nil {
		return "", err
	}
	flag := "--node-token-file"
	if tokenFile == "" && c.NodeTokenFile != "" {
		tokenFile, flag = c.NodeTokenFile, f.contextKey("node_token_file")
	}
	allow = allow || c.AllowOperatorToken
	if tokenFile == "" {
		if !allow {
			return "", usagef("--node-token-file: not set: droplets would get your own DigitalOcean token, which anything on them can read; %s", nodeTokenHint)
		}
		tok, err := f.Token()
		if err != nil {
			return "", err
		}
		p.Info("warning: droplets get your own DigitalOcean token (--allow-operator-token): anything on a droplet can read it; a node token with only %s is safer", strings.Join(NodeTokenScopes, " "))
		return tok, nil
	}
	if err := checkPrivateFile(flag, tokenFile); err != nil {
		return "", err
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return "", usagef("%s %q: %v", flag, tokenFile, errors.Unwrap(err))
	}
	tok := strings.Trim(strings.TrimSpace(string(b)), "'\"")
	if tok == "" {
		return "", usagef("%s %q: empty; %s", flag, tokenFile, nodeTokenHint)
	}
	if op, err := f.Token(); err == nil && op == tok && !allow {
		return "", usagef("%s %q: holds your own DigitalOcean token, not a node token; %s", flag, tokenFile, nodeTokenHint)
	}
	return tok, nil
}

// checkNodeToken asks DigitalOcean whether the node token can make the
// reads dynia-pull needs (ops.CheckNodeToken), with a client of its own.
// The CLI's own token (allowed) is not checked.
func checkNodeToken(ctx context.Context, f *Factory, token string, p *Progress) error {
	op, err := f.Token()
	if err != nil || op == token {
		return err
	}
	_, c, err := f.Config()
	if err != nil {
		return err
	}
	cl, err := f.cloudWith(token, c)
	if err != nil {
		return usagef("--node-token-file: %v", err)
	}
	defer cl.CloseIdleConnections()
	return ops.CheckNodeToken(ctx, cl, p)
}

// bootSpec is what this run's droplets boot with: token (loadNodeToken's),
// the state's location and how droplets reach it (flag, environment or
// context: the same endpoint, region and addressing the CLI writes with,
// unless the context names the endpoint as droplets see it), the cluster
// key, and the dynia-pull a bootstrap cluster uploads.
func bootSpec(f *Factory, token string) (*ops.BootSpec, error) {
	stateURL, err := f.StateURL()
	if err != nil {
		return nil, err
	}
	_, c, err := f.Config()
	if err != nil {
		return nil, err
	}
	bo, err := f.BucketOptions()
	if err != nil {
		return nil, err
	}
	endpoint := bo.Endpoint
	if c.NodeSpacesEndpoint != "" {
		endpoint = c.NodeSpacesEndpoint
	}
	return &ops.BootSpec{
		StateURL: stateURL,
		Node: nodeconfig.Config{Endpoint: endpoint, Region: bo.Region, PathStyle: bo.PathStyle,
			DOAPIURL: c.NodeAPIURL, MetadataURL: c.MetadataURL},
		NodeToken:           token,
		OperatorSpacesKeyID: bo.AccessKeyID, OperatorSpacesSecret: bo.SecretAccessKey,
		ClusterKey:  f.clusterKey,
		PullBinary:  pullBinaryPath(f.Getenv),
		PullVersion: Version,
		StuckAfter:  f.StuckAfter,
	}, nil
}

// pullBinaryPath finds the dynia-pull a bootstrap cluster uploads:
// $DYNIA_PULL_BINARY, next to this dynia, else on PATH ("" if none).
func pullBinaryPath(getenv func(string) string) string {
	if p := getenv("DYNIA_PULL_BINARY"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "dynia-pull")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath("dynia-pull")
	return p
}

// journalDir is where `node add` keeps its crash journal ($DYNIA_JOURNAL_DIR
// overrides it for tests).
func journalDir(f *Factory) string {
	if d := f.Getenv("DYNIA_JOURNAL_DIR"); d != "" {
		return d
	}
	return ops.JournalDir()
}

// nodeBoot prepares what droplets of a command that creates them need,
// before any API call: the node token (bad input first), then the boot
// spec with it.
func nodeBoot(f *Factory, tokenFile string, allow bool, p *Progress) (*ops.BootSpec, error) {
	tok, err := loadNodeToken(f, tokenFile, allow, p)
	if err != nil {
		return nil, err
	}
	return bootSpec(f, tok)
}

// nodeKeyName names the nodes' Spaces key (ops.NodeKeyName).
func nodeKeyName(clusterName, stateURL string) string { return ops.NodeKeyName(clusterName, stateURL) }
