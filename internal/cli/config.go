package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Config is ~/.config/dynia/config.yaml: named contexts, each saying where
// the state lives and how to reach DigitalOcean. Tokens are referenced by
// file or environment variable; the file is written 0600 regardless.
type Config struct {
	CurrentContext string              `json:"current-context,omitempty"`
	Contexts       map[string]*Context `json:"contexts,omitempty"`

	path string
}

// Context is one target: a real DO account or the local sandbox.
type Context struct {
	// State is s3://bucket/prefix or file://DIR.
	State          string `json:"state,omitempty"`
	SpacesEndpoint string `json:"spaces_endpoint,omitempty"`
	SpacesRegion   string `json:"spaces_region,omitempty"`
	PathStyle      bool   `json:"path_style,omitempty"`
	// SpacesCredentialsFile holds {"access_key_id","secret_access_key"}.
	SpacesCredentialsFile string `json:"spaces_credentials_file,omitempty"`
	// APIURL overrides https://api.digitalocean.com/ (the sandbox sets it).
	APIURL string `json:"api_url,omitempty"`
	// TokenFile / TokenEnv say where the DO token comes from; default the
	// environment (DIGITALOCEAN_ACCESS_TOKEN, then DIGITALOCEAN_TOKEN).
	TokenFile string `json:"token_file,omitempty"`
	TokenEnv  string `json:"token_env,omitempty"`
	// NodeTokenFile is the node-scoped token create-ha hands to droplets.
	NodeTokenFile string `json:"node_token_file,omitempty"`
	// MetadataURL is what nodes use for the metadata service (sandbox only).
	MetadataURL string `json:"metadata_url,omitempty"`
	// NodeSpacesEndpoint is the S3 endpoint as seen from droplets, when it
	// differs from the CLI's (sandbox only).
	NodeSpacesEndpoint string `json:"node_spaces_endpoint,omitempty"`
	// NodeAPIURL is the DO API as seen from droplets (sandbox only).
	NodeAPIURL string `json:"node_api_url,omitempty"`
}

// DefaultConfigPath is $XDG_CONFIG_HOME/dynia/config.yaml.
func DefaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "dynia", "config.yaml")
}

// LoadConfig reads the config file; a missing file is an empty config.
func LoadConfig(path string) (*Config, error) {
	c := &Config{Contexts: map[string]*Context{}, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	return c, nil
}

// Save writes the config atomically with mode 0600.
func (c *Config) Save() error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return writeFileAtomic(c.path, b, 0o600)
}

// Resolve returns the context named by --context, else the current one,
// else an empty context (environment only).
func (c *Config) Resolve(name string) (*Context, string, error) {
	if name == "" {
		name = c.CurrentContext
	}
	if name == "" {
		return &Context{}, "", nil
	}
	ctx, ok := c.Contexts[name]
	if !ok {
		names := make([]string, 0, len(c.Contexts))
		for n := range c.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, "", usagef("--context %q: no such context (have: %s)", name, strings.Join(names, ", "))
	}
	return ctx, name, nil
}

// writeFileAtomic writes via a temp file in the same directory, fsync and
// rename, so readers never see a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // gone after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
