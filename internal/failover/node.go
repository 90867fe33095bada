package failover

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/metadata"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// apiOptions tune the node's DO client for failover: short retries (every
// second of a claim is outage), quick action polls, and a short attempt
// timeout with few retries: a node cut from the API must learn it (and
// report it) in seconds, not after godo's default 5 attempts of 60 s. The
// claim loop is the retry that matters: a MASTER without the IP claims
// again at its next check (pull.CheckEvery).
func apiOptions(cfg *nodeconfig.Config, log *slog.Logger) cloud.Options {
	return cloud.Options{
		BaseURL: cfg.DOAPIURL, Logger: log, RetryWaitMin: 200 * time.Millisecond, RetryWaitMax: 3 * time.Second,
		RetryMax: 2, RequestTimeout: 5 * time.Second,
		PollInterval: 200 * time.Millisecond, PollMax: time.Second,
	}
}

// NewNode builds the DO-backed claimer from a node's config: the node token
// from its 0600 file and the metadata service (a short timeout: Check asks
// it every few seconds and must not stall on an outage). An unreadable
// token file still gives a claimer, whose calls fail with the reason until
// Reload finds a good file: the node reports it instead of going quiet.
func NewNode(cfg *nodeconfig.Config, log *slog.Logger) *Claimer {
	md := metadata.New(cfg.MetadataURL, &http.Client{Timeout: time.Second})
	c := New(cfg.NodeID, nil, md)
	c.Logger = log
	c.Reload(cfg)
	return c
}

// Reload re-reads the node token named by cfg (the file changed).
func (c *Claimer) Reload(cfg *nodeconfig.Config) {
	api, err := LoadAPI(cfg, c.Logger)
	if err != nil {
		c.SetAPI(nil, err)
		return
	}
	c.SetAPI(api, nil)
}

// LoadAPI reads the node token file and returns a DO client for it. Called
// at start and whenever the token file changes (pull.Run watches it).
func LoadAPI(cfg *nodeconfig.Config, log *slog.Logger) (*cloud.Client, error) {
	if cfg.DOTokenFile == "" {
		return nil, fmt.Errorf("failover: node config has no do_token_file")
	}
	b, err := os.ReadFile(cfg.DOTokenFile)
	if err != nil {
		return nil, fmt.Errorf("failover: read node token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("failover: node token file %s is empty", cfg.DOTokenFile)
	}
	return cloud.New(tok, apiOptions(cfg, log))
}
