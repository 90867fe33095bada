package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/dynia/dynia/internal/fsutil"
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
	// NodeTokenFile is the node-scoped token create-ha hands to droplets
	// (reserved_ip:update and the reads DO adds with it; mode 0600).
	NodeTokenFile string `json:"node_token_file,omitempty"`
	// AllowOperatorToken lets commands that create droplets give them the
	// CLI's own token when no node token is configured (what
	// --allow-operator-token does for one command). Unsafe: anything on a
	// droplet can read its user-data.
	AllowOperatorToken bool `json:"allow_operator_token,omitempty"`
	// MetadataURL is what nodes use for the metadata service (sandbox only).
	MetadataURL string `json:"metadata_url,omitempty"`
	// NodeSpacesEndpoint is the S3 endpoint as seen from droplets, when it
	// differs from the CLI's (sandbox only).
	NodeSpacesEndpoint string `json:"node_spaces_endpoint,omitempty"`
	// NodeAPIURL is the DO API as seen from droplets (sandbox only).
	NodeAPIURL string `json:"node_api_url,omitempty"`
	// CloudflareAPIURL overrides https://api.cloudflare.com/client/v4
	// (the sandbox's simulator); CloudflareTokenFile holds a token (0600)
	// used when CLOUDFLARE_API_TOKEN is not set.
	CloudflareAPIURL    string `json:"cloudflare_api_url,omitempty"`
	CloudflareTokenFile string `json:"cloudflare_token_file,omitempty"`
	// ACMEDirectory is the default `tls enable --acme-url` (the sandbox's
	// Pebble); ACMEDirectoryRoots and ACMETrustRoots are PEM files: what
	// the directory's TLS certificate and issued certificates chain to.
	ACMEDirectory      string `json:"acme_directory,omitempty"`
	ACMEDirectoryRoots string `json:"acme_directory_roots,omitempty"`
	ACMETrustRoots     string `json:"acme_trust_roots,omitempty"`
	// InsecureRegistries are container registries (host:port) the CLI may
	// reach over plain HTTP when it resolves an image tag to its digest:
	// the sandbox's own registry, which `sandbox up` records here. A
	// real registry never belongs in it.
	InsecureRegistries []string `json:"insecure_registries,omitempty"`
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
		// A typo in the file is bad input: exit 2, one line.
		return nil, usagef("config %s: %s", path, configProblem(b, err))
	}
	if c.Contexts == nil {
		c.Contexts = map[string]*Context{}
	}
	return c, nil
}

// configProblem says in one line what is wrong with a config file that did
// not decode: the bad key and value when the file is valid YAML, else the
// parser's message.
func configProblem(b []byte, err error) string {
	var raw map[string]any
	if yaml.Unmarshal(b, &raw) == nil {
		if msg := badConfigKey(raw); msg != "" {
			return msg
		}
	}
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	return strings.Join(strings.Fields(msg), " ")
}

// badConfigKey finds the first unknown key or wrongly typed value, in a
// stable order, naming it by its path (contexts.NAME.KEY).
func badConfigKey(raw map[string]any) string {
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		switch k {
		case "current-context":
			if _, ok := v.(string); !ok && v != nil {
				return fmt.Sprintf("current-context: %s is not a context name", showValue(v))
			}
		case "contexts":
			if v == nil {
				continue
			}
			ctxs, ok := v.(map[string]any)
			if !ok {
				return fmt.Sprintf("contexts: %s is not a map of named contexts", showValue(v))
			}
			for _, name := range sortedKeys(ctxs) {
				if msg := badContextKey(name, ctxs[name]); msg != "" {
					return msg
				}
			}
		default:
			return fmt.Sprintf("unknown key %q (known: current-context, contexts)", k)
		}
	}
	return ""
}

func badContextKey(name string, v any) string {
	if v == nil {
		return ""
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Sprintf("contexts.%s: %s is not a map of settings", name, showValue(v))
	}
	fields := map[string]reflect.Kind{}
	var known []string
	t := reflect.TypeFor[Context]()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[tag] = t.Field(i).Type.Kind()
		known = append(known, tag)
	}
	for _, k := range sortedKeys(m) {
		kind, ok := fields[k]
		switch {
		case !ok:
			return fmt.Sprintf("contexts.%s: unknown key %q (known: %s)", name, k, strings.Join(known, ", "))
		case kind == reflect.Bool:
			if _, ok := m[k].(bool); !ok {
				return fmt.Sprintf("contexts.%s.%s: %s is not true or false", name, k, showValue(m[k]))
			}
		case kind == reflect.String:
			if _, ok := m[k].(string); !ok && m[k] != nil {
				return fmt.Sprintf("contexts.%s.%s: %s is not a string (quote it)", name, k, showValue(m[k]))
			}
		case kind == reflect.Slice:
			if !isStringList(m[k]) {
				return fmt.Sprintf("contexts.%s.%s: %s is not a list of strings (like [\"a\", \"b\"])", name, k, showValue(m[k]))
			}
		}
	}
	return ""
}

// isStringList reports whether a YAML value is a list of strings (or null).
func isStringList(v any) bool {
	if v == nil {
		return true
	}
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range l {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// showValue prints a YAML value compactly on one line.
func showValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
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
	return fsutil.WriteFileAtomic(c.path, b, 0o600)
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
		return nil, "", usagef("--context %q: no such context (have: %s)", name, strings.Join(c.contextNames(), ", "))
	}
	return ctx, name, nil
}
