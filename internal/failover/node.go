package failover

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/metadata"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// Node adapts a Claimer to dynia-pull: it reads the current state from the
// bucket on each call, so a claim always acts on the newest node table.
type Node struct {
	Claimer *Claimer
	Store   *cluster.Store
	Cluster string
}

// NewNode builds the DO-backed claimer from a node's config: the node token
// from its 0600 file, the metadata service, and the state store.
func NewNode(cfg *nodeconfig.Config, store bucket.Store, log *slog.Logger) (*Node, error) {
	if cfg.DOTokenFile == "" {
		return nil, fmt.Errorf("failover: node config has no do_token_file")
	}
	b, err := os.ReadFile(cfg.DOTokenFile)
	if err != nil {
		return nil, fmt.Errorf("failover: read node token: %w", err)
	}
	api, err := cloud.New(strings.TrimSpace(string(b)), cloud.Options{
		BaseURL: cfg.DOAPIURL, Logger: log, RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: 3 * time.Second,
		PollInterval: 200 * time.Millisecond, PollMax: time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &Node{
		Claimer: &Claimer{API: api, Metadata: metadata.New(cfg.MetadataURL, nil), Logger: log},
		Store:   cluster.NewStore(store),
		Cluster: cfg.Cluster,
	}, nil
}

// Claim is called on a MASTER transition (pull.ReservedIPClaimer).
func (n *Node) Claim(ctx context.Context, reason string) (bool, string, error) {
	st, _, err := n.Store.Load(ctx, n.Cluster)
	if err != nil {
		return false, "", err
	}
	res, err := n.Claimer.Claim(ctx, st, reason)
	return res.Moved, res.Reason, err
}

// Check is called every few seconds while MASTER (pull.ReservedIPClaimer).
func (n *Node) Check(ctx context.Context) (bool, string, error) {
	st, _, err := n.Store.Load(ctx, n.Cluster)
	if err != nil {
		return false, "", err
	}
	res, err := n.Claimer.Check(ctx, st)
	return res.Moved, res.Reason, err
}
