package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// Factory builds what commands need, lazily: a command that fails flag
// validation never reads the config, opens the bucket or calls the API.
type Factory struct {
	IO     *IOStreams
	Global GlobalOptions
	Logger *slog.Logger
	// Getenv is os.Getenv; tests replace it.
	Getenv func(string) string

	// Overrides for tests: when set, used instead of building from config.
	StoreOverride bucket.Store
	CloudOptions  cloud.Options // merged into the built client's options
	// BucketHTTPClient, when set, carries every S3 request of the built
	// store (tests count the writes a command makes with it).
	BucketHTTPClient *http.Client
	// WrapStore, when set, wraps the store Store opens from the state URL
	// (tests count the requests to a file:// state with it).
	WrapStore func(bucket.Store) bucket.Store
	// StuckAfter is how old a droplet still "new" must be to count as one
	// that never becomes active (default ops.StuckDropletAge).
	StuckAfter time.Duration

	once struct {
		cfg   sync.Once
		store sync.Once
		cloud sync.Once
	}
	cfg      *Config
	ctxCfg   *Context
	ctxName  string
	cfgErr   error
	store    *cluster.Store
	storeErr error
	cl       *cloud.Client
	clErr    error
}

// NewFactory returns a Factory on the given streams.
func NewFactory(io *IOStreams) *Factory {
	return &Factory{IO: io, Getenv: os.Getenv, Logger: slog.New(slog.DiscardHandler)}
}

// Config loads the config file and resolves the context.
func (f *Factory) Config() (*Config, *Context, error) {
	f.once.cfg.Do(func() {
		f.cfg, f.cfgErr = LoadConfig(f.configPath())
		if f.cfgErr != nil {
			return
		}
		f.ctxCfg, f.ctxName, f.cfgErr = f.cfg.Resolve(f.contextFlagName())
	})
	return f.cfg, f.ctxCfg, f.cfgErr
}

// StateURL is --state, else $DYNIA_STATE, else the context's.
func (f *Factory) StateURL() (string, error) {
	if f.Global.State != "" {
		return f.Global.State, nil
	}
	if v := f.Getenv("DYNIA_STATE"); v != "" {
		return v, nil
	}
	_, c, err := f.Config()
	if err != nil {
		return "", err
	}
	if c.State == "" {
		return "", usagef("--state: not set (give --state s3://bucket/prefix, set DYNIA_STATE, or run `dynia sandbox up`)")
	}
	return c.State, nil
}

// CheckStateURL validates --state's shape without touching the network.
func CheckStateURL(u string) error {
	if !strings.HasPrefix(u, "s3://") && !strings.HasPrefix(u, "file://") {
		return usagef("--state %q: must be s3://bucket/prefix or file://DIR", u)
	}
	if u == "s3://" || u == "file://" {
		return usagef("--state %q: missing bucket or directory", u)
	}
	return nil
}

// BucketOptions returns the S3 options of the current context.
func (f *Factory) BucketOptions() (bucket.Options, error) {
	_, c, err := f.Config()
	if err != nil {
		return bucket.Options{}, err
	}
	o := bucket.Options{Endpoint: c.SpacesEndpoint, Region: c.SpacesRegion, PathStyle: c.PathStyle, Logger: f.Logger,
		HTTPClient: f.BucketHTTPClient}
	// Flag over environment over context, for the endpoint and the region.
	for _, v := range []string{f.Getenv("SPACES_ENDPOINT"), f.Global.SpacesEndpoint} {
		if v != "" {
			o.Endpoint = v
		}
	}
	for _, v := range []string{f.Getenv("SPACES_REGION"), f.Global.SpacesRegion} {
		if v != "" {
			o.Region = v
		}
	}
	if c.SpacesCredentialsFile != "" && f.Getenv("SPACES_ACCESS_KEY_ID") == "" && f.Getenv("AWS_ACCESS_KEY_ID") == "" {
		if err := checkPrivateFile(f.contextKey("spaces_credentials_file"), c.SpacesCredentialsFile); err != nil {
			return o, err
		}
		id, secret, err := bucket.LoadCredentialsFile(c.SpacesCredentialsFile)
		if err != nil {
			return o, err
		}
		o.AccessKeyID, o.SecretAccessKey = id, secret
	}
	return o, nil
}

// Store opens the state store (no network I/O until used).
func (f *Factory) Store(ctx context.Context) (*cluster.Store, error) {
	f.once.store.Do(func() {
		if f.StoreOverride != nil {
			f.store = f.guarded(cluster.NewSignedStore(f.StoreOverride, f.stateKeys()))
			return
		}
		u, err := f.StateURL()
		if err != nil {
			f.storeErr = err
			return
		}
		if err := CheckStateURL(u); err != nil {
			f.storeErr = err
			return
		}
		o, err := f.BucketOptions()
		if err != nil {
			f.storeErr = err
			return
		}
		b, err := bucket.Open(ctx, u, o)
		if err != nil {
			f.storeErr = fmt.Errorf("open state %s: %w", u, err)
			return
		}
		if f.WrapStore != nil {
			b = f.WrapStore(b)
		}
		f.store = f.guarded(cluster.NewSignedStore(b, f.stateKeys()))
	})
	return f.store, f.storeErr
}

// guarded makes store check the nodes' versions before a write raises
// min_pull_version (checkPullVersions).
func (f *Factory) guarded(store *cluster.Store) *cluster.Store {
	store.CheckRaise = func(ctx context.Context, cur, next *cluster.State) error {
		return f.checkPullVersions(ctx, store, cur, next)
	}
	return store
}

// WritableStore is Store plus the check that the bucket honours conditional
// writes; without that, concurrent writers could silently lose updates.
func (f *Factory) WritableStore(ctx context.Context) (*cluster.Store, error) {
	s, err := f.Store(ctx)
	if err != nil {
		return nil, err
	}
	if err := bucket.RequireSafe(ctx, s.B, f.Global.AllowUnsafeWrites); err != nil {
		return nil, err
	}
	return s, nil
}

// Token returns the DO API token: the context's token file or env name,
// else DIGITALOCEAN_ACCESS_TOKEN (doctl's), else DIGITALOCEAN_TOKEN.
func (f *Factory) Token() (string, error) {
	_, c, err := f.Config()
	if err != nil {
		return "", err
	}
	if c.TokenFile != "" {
		if err := checkPrivateFile(f.contextKey("token_file"), c.TokenFile); err != nil {
			return "", err
		}
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read token file of context %s: %w", f.ctxName, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	for _, name := range []string{c.TokenEnv, "DIGITALOCEAN_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN"} {
		if name == "" {
			continue
		}
		if v := strings.TrimSpace(f.Getenv(name)); v != "" {
			return v, nil
		}
	}
	return "", &AuthError{Err: fmt.Errorf("no DigitalOcean token: set DIGITALOCEAN_ACCESS_TOKEN (or DIGITALOCEAN_TOKEN)")}
}

// contextKey names a setting of the current context in messages:
// contexts.NAME.KEY (KEY alone without a named context).
func (f *Factory) contextKey(key string) string {
	if f.ctxName == "" {
		return key
	}
	return "contexts." + f.ctxName + "." + key
}

// Cloud returns the DO API client.
func (f *Factory) Cloud() (*cloud.Client, error) {
	f.once.cloud.Do(func() {
		tok, err := f.Token()
		if err != nil {
			f.clErr = err
			return
		}
		_, c, err := f.Config()
		if err != nil {
			f.clErr = err
			return
		}
		f.cl, f.clErr = f.cloudWith(tok, c)
	})
	return f.cl, f.clErr
}

// cloudWith returns a DO API client for token: the factory's options, the
// API URL apiBaseURL gives for context c.
func (f *Factory) cloudWith(token string, c *Context) (*cloud.Client, error) {
	o := f.CloudOptions
	o.BaseURL = f.apiBaseURL(c)
	if o.Logger == nil {
		o.Logger = f.Logger
	}
	return cloud.New(token, o)
}

// apiBaseURL is where the DO API is: the factory's override, the
// context's, DIGITALOCEAN_API_URL, else "" (api.digitalocean.com).
func (f *Factory) apiBaseURL(c *Context) string {
	switch {
	case f.CloudOptions.BaseURL != "":
		return f.CloudOptions.BaseURL
	case c.APIURL != "":
		return c.APIURL
	}
	return f.Getenv("DIGITALOCEAN_API_URL")
}

// checkStateReachableByDroplets refuses, as bad input, a file:// state when
// droplets are real DigitalOcean droplets: they could never read it, and
// the command would wait for reports that cannot come. A simulator (an API
// URL other than DO's) may use one.
func (f *Factory) checkStateReachableByDroplets() error {
	u, err := f.StateURL()
	if err != nil || !strings.HasPrefix(u, "file://") {
		return err
	}
	_, c, err := f.Config()
	if err != nil {
		return err
	}
	if base := f.apiBaseURL(c); base == "" || strings.Contains(base, "api.digitalocean.com") {
		return usagef("--state %q: droplets on DigitalOcean cannot read a local directory; use a Spaces bucket (s3://bucket/prefix)", u)
	}
	return nil
}

// loadState opens the store and reads cluster name's state (verified, as
// every read): the start of every command that only looks.
func (f *Factory) loadState(ctx context.Context, name string) (*cluster.Store, *cluster.State, error) {
	store, err := f.Store(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return store, st, nil
}

// openCluster starts every command that acts on an existing cluster; see
// openClusterNode.
func (f *Factory) openCluster(ctx context.Context, name string, write bool) (*cluster.Store, *cluster.State, *cloud.Client, error) {
	return f.openClusterNode(ctx, name, "", write)
}

// openClusterNode opens the store, loads the cluster's state and builds the
// API client. Bad input is reported first, with nothing written and no API
// call: the state is only read until the cluster is known to exist and node
// (when not empty) to be one of its nodes. Only then, when write is set, and
// unless a read-only DO call was refused the token, does the
// conditional-write probe put its scratch objects in the bucket.
// Each check runs on the state as read, before any API call: bad input
// that only the state shows (e.g. the last node) is refused there.
func (f *Factory) openClusterNode(ctx context.Context, name, node string, write bool, checks ...func(*cluster.State) error) (*cluster.Store, *cluster.State, *cloud.Client, error) {
	store, st, err := f.loadState(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	if node != "" && st.Node(node) == nil {
		return nil, nil, nil, usagef("--node %q: not a node of cluster %s", node, name)
	}
	for _, check := range checks {
		if err := check(st); err != nil {
			return nil, nil, nil, err
		}
	}
	cl, err := f.Cloud()
	if err != nil {
		return nil, nil, nil, err
	}
	if write {
		// A token DigitalOcean refuses fails here, before the write probe
		// puts its scratch objects in the bucket: nothing is written. Any
		// other failure (DO down) is not this command's concern: app and
		// TLS commands only write the bucket, and must work without DO.
		var ae *cloud.AuthError
		cloudErr := ops.CheckCloud(ctx, cl, name)
		if errors.As(cloudErr, &ae) {
			return nil, nil, nil, cloudErr
		}
		if _, err := f.WritableStore(ctx); err != nil {
			return nil, nil, nil, err
		}
		// Following a failover needs DO's view of the Reserved IP: when
		// DO just did not answer (after its retries), asking again would
		// only wait as long once more.
		if cloudErr == nil {
			p := NewProgress(f.IO, f.Global.Output == "json")
			if st, err = ops.FollowFailover(ctx, ops.Deps{Store: store, Cloud: cl, Report: p}, st); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return store, st, cl, nil
}
