package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/fsutil"
)

// `dynia auth init` and `dynia context create|use|list|delete`: setting up
// ~/.config/dynia/config.yaml without editing it, as doctl's `auth init`
// and `auth switch` do. Every write of the config is atomic (Config.Save:
// temp file, fsync, rename) and 0600; bad input is refused before any
// write or API call.

// contextNameRE: a context's name (a YAML key and a file name).
var contextNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// defaultContextName is the context `auth init` creates when there is none.
const defaultContextName = "default"

// authCheckTimeout bounds `auth init`'s one API call (GET /v2/account).
const authCheckTimeout = 30 * time.Second

// configPath is --config, else $DYNIA_CONFIG, else the default.
func (f *Factory) configPath() string {
	if p := f.Global.ConfigPath; p != "" {
		return p
	}
	if p := f.Getenv("DYNIA_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath()
}

// contextFlagName is --context, else $DYNIA_CONTEXT ("" when neither).
func (f *Factory) contextFlagName() string {
	if f.Global.Context != "" {
		return f.Global.Context
	}
	return f.Getenv("DYNIA_CONTEXT")
}

func checkContextName(flag, name string) error {
	if !contextNameRE.MatchString(name) {
		return usagef("%s %q: want letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)", flag, name)
	}
	return nil
}

// NewCmdAuth is `dynia auth`.
func NewCmdAuth(f *Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Store and check the DigitalOcean API token"}
	cmd.AddCommand(newCmdAuthInit(f))
	return cmd
}

func newCmdAuthInit(f *Factory) *cobra.Command {
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Read a DigitalOcean API token, check it with DigitalOcean, store it for the context",
		Long: `Reads a DigitalOcean API token (typed without echo on a terminal, else the first line of
stdin, or --token-file), checks it with one DigitalOcean API call (GET /v2/account), and stores
it in a 0600 file beside the config, named by the context's token_file. The context is --context,
else the current one, else "default" (created and made current).

A token DigitalOcean rejects exits 4 and stores nothing. The token never appears in argv, logs
or errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuthInit(cmd.Context(), f, tokenFile)
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from this file (0600) instead of the terminal or stdin")
	return cmd
}

func runAuthInit(ctx context.Context, f *Factory, tokenFile string) error {
	name := f.contextFlagName()
	if name != "" {
		if err := checkContextName("--context", name); err != nil {
			return err
		}
	}
	if tokenFile != "" {
		if err := checkPrivateFile("--token-file", tokenFile); err != nil {
			return err
		}
	}
	cfg, err := LoadConfig(f.configPath())
	if err != nil {
		return err
	}
	if name == "" {
		name = cfg.CurrentContext
	}
	if name == "" {
		name = defaultContextName
	}
	c := cfg.Contexts[name]
	if c == nil {
		c = &Context{}
	}
	tok, err := readToken(ctx, f, tokenFile)
	if err != nil {
		return err
	}

	// One API call, through the client every command uses (its errors
	// never carry the token).
	cl, err := f.cloudWith(tok, c)
	if err != nil {
		return fmt.Errorf("auth init: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, authCheckTimeout)
	defer cancel()
	acct, err := cl.Account(actx)
	if errors.Is(err, cloud.ErrAuth) {
		return &AuthError{Err: fmt.Errorf("auth init: %w", err)} // says the token was rejected
	}
	if err != nil {
		return fmt.Errorf("auth init: check the token: %w", err)
	}

	// Absolute: a relative --config would store a path that every
	// command run from another directory could not open.
	path, err := filepath.Abs(filepath.Join(filepath.Dir(cfg.path), "tokens", name+".token"))
	if err != nil {
		return fmt.Errorf("auth init: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("auth init: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("auth init: store the token: %w", err)
	}
	c.TokenFile = path
	c.TokenEnv = ""
	cfg.Contexts[name] = c
	if cfg.CurrentContext == "" {
		cfg.CurrentContext = name
	}
	if err := cfg.Save(); err != nil {
		return fmt.Errorf("auth init: save config: %w", err)
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, map[string]string{"context": name, "token_file": path, "account": acct.Email})
	}
	fmt.Fprintf(f.IO.Out, "Token accepted for %s; stored in %s (context %s)\n", acct.Email, path, name)
	return nil
}

// readToken reads the token from tokenFile, else the terminal without echo,
// else stdin's first line. An empty token is bad input.
func readToken(ctx context.Context, f *Factory, tokenFile string) (string, error) {
	var tok string
	switch {
	case tokenFile != "":
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", usagef("--token-file %q: %v", tokenFile, errors.Unwrap(err))
		}
		tok = string(b)
	case f.IO.InTTY:
		in, ok := f.IO.In.(*os.File)
		if !ok {
			return "", errors.New("auth init: stdin is a terminal but not a file")
		}
		fmt.Fprint(f.IO.ErrOut, "DigitalOcean API token: ")
		b, err := readPassword(ctx, int(in.Fd()))
		fmt.Fprintln(f.IO.ErrOut)
		if err != nil {
			return "", fmt.Errorf("auth init: read the token: %w", err)
		}
		tok = string(b)
	default:
		line, err := bufio.NewReader(io.LimitReader(f.IO.In, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("auth init: read the token from stdin: %w", err)
		}
		tok = line
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return "", usagef("token: empty (type it when asked, pipe it on stdin, or give --token-file)")
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", usagef("token: contains whitespace (one token, on one line)")
	}
	return tok, nil
}

// readPassword is term.ReadPassword (echo off while the line is typed)
// that also returns when ctx ends: main turns Ctrl-C into a cancelled
// context, which would otherwise leave the read waiting for Enter. The
// terminal's state is restored either way.
func readPassword(ctx context.Context, fd int) ([]byte, error) {
	old, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type answer struct {
		b   []byte
		err error
	}
	done := make(chan answer, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		done <- answer{b, err}
	}()
	select {
	case a := <-done:
		return a.b, a.err
	case <-ctx.Done():
		_ = term.Restore(fd, old)
		return nil, ctx.Err()
	}
}

// NewCmdContext is `dynia context`.
func NewCmdContext(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Create, switch, list and delete config contexts (where the state lives, how to reach DigitalOcean)",
	}
	cmd.AddCommand(newCmdContextCreate(f), newCmdContextUse(f), newCmdContextList(f), newCmdContextDelete(f))
	return cmd
}

func newCmdContextCreate(f *Factory) *cobra.Command {
	var o contextCreateOptions
	cmd := &cobra.Command{
		Use:   "create NAME --state s3://BUCKET/PREFIX [--spaces-endpoint URL] [--spaces-region REGION] [--spaces-credentials-file F] [--node-token-file F]",
		Short: "Add a context; the first one becomes the current one",
		Long: `Adds a context to the config: the state's location (--state), the bucket's endpoint and
region (--spaces-endpoint, --spaces-region; a Spaces bucket's are on its Settings page, e.g.
https://sgp1.digitaloceanspaces.com and sgp1), the bucket's access key (--spaces-credentials-file,
0600 JSON {"access_key_id": "…", "secret_access_key": "…"}) and the node token file (0600)
commands that create droplets hand to them. The first context becomes the current one (--use makes any one current).
The DO token is added by ` + "`dynia auth init --context NAME`" + `.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContextCreate(f, args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.NodeTokenFile, "node-token-file", "", "file (0600) with the node token handed to droplets: "+nodeTokenScopesHelp)
	cmd.Flags().StringVar(&o.SpacesCredentialsFile, "spaces-credentials-file", "", `file (0600) with the bucket's access key: {"access_key_id": "…", "secret_access_key": "…"} (default: SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY)`)
	cmd.Flags().BoolVar(&o.Use, "use", false, "make it the current context")
	return cmd
}

type contextCreateOptions struct {
	NodeTokenFile, SpacesCredentialsFile string
	Use                                  bool
}

// privateFileFlag makes path absolute (the config is read from anywhere)
// and refuses a file that is missing or others may read.
func privateFileFlag(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", usagef("%s %q: %v", flag, path, err)
	}
	if err := checkPrivateFile(flag, abs); err != nil {
		return "", err
	}
	return abs, nil
}

func runContextCreate(f *Factory, name string, o contextCreateOptions) error {
	if err := checkContextName("NAME", name); err != nil {
		return err
	}
	state := f.Global.State
	if state == "" {
		return usagef("--state: required (s3://bucket/prefix or file://DIR)")
	}
	if err := CheckStateURL(state); err != nil {
		return err
	}
	nodeTokenFile, err := privateFileFlag("--node-token-file", o.NodeTokenFile)
	if err != nil {
		return err
	}
	credFile, err := privateFileFlag("--spaces-credentials-file", o.SpacesCredentialsFile)
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(f.configPath())
	if err != nil {
		return err
	}
	if _, ok := cfg.Contexts[name]; ok {
		return usagef("NAME %q: a context of that name exists (dynia context delete %s first)", name, name)
	}
	cfg.Contexts[name] = &Context{State: state, SpacesEndpoint: f.Global.SpacesEndpoint,
		SpacesRegion: f.Global.SpacesRegion, SpacesCredentialsFile: credFile, NodeTokenFile: nodeTokenFile}
	if o.Use || cfg.CurrentContext == "" {
		cfg.CurrentContext = name
	}
	if err := cfg.Save(); err != nil {
		return fmt.Errorf("context create: save config: %w", err)
	}
	fmt.Fprintf(f.IO.ErrOut, "Context %s created", name)
	if cfg.CurrentContext == name {
		fmt.Fprint(f.IO.ErrOut, " (current)")
	}
	fmt.Fprintln(f.IO.ErrOut)
	return nil
}

func newCmdContextUse(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:               "use NAME",
		Short:             "Make a context the current one",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeContextArg(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadWithContext(f, args[0])
			if err != nil {
				return err
			}
			cfg.CurrentContext = args[0]
			if err := cfg.Save(); err != nil {
				return fmt.Errorf("context use: save config: %w", err)
			}
			fmt.Fprintf(f.IO.ErrOut, "Current context: %s\n", args[0])
			return nil
		},
	}
}

// loadWithContext loads the config and checks that context name is in it.
func loadWithContext(f *Factory, name string) (*Config, error) {
	cfg, err := LoadConfig(f.configPath())
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Contexts[name]; !ok {
		return nil, usagef("NAME %q: no such context (have: %s)", name, strings.Join(cfg.contextNames(), ", "))
	}
	return cfg, nil
}

func (c *Config) contextNames() []string {
	names := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ContextRow is one line of `dynia context list`.
type ContextRow struct {
	Name           string `json:"name"`
	Current        bool   `json:"current"`
	State          string `json:"state"`
	SpacesEndpoint string `json:"spaces_endpoint,omitempty"`
	SpacesRegion   string `json:"spaces_region,omitempty"`
	// TokenFile and NodeTokenFile are paths, never the tokens.
	TokenFile     string `json:"token_file,omitempty"`
	NodeTokenFile string `json:"node_token_file,omitempty"`
}

// contextColumns are `context list`'s table.
var contextColumns = []column{
	{"Current", "CURRENT"}, {"Name", "NAME"}, {"State", "STATE"}, {"SpacesEndpoint", "SPACES ENDPOINT"},
	{"SpacesRegion", "SPACES REGION"}, {"DOToken", "DO TOKEN"},
}

func newCmdContextList(f *Factory) *cobra.Command {
	var to TableOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the contexts, the current one marked *",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := newTable(contextColumns, to)
			if err != nil {
				return err
			}
			cfg, err := LoadConfig(f.configPath())
			if err != nil {
				return err
			}
			rows := []ContextRow{}
			for _, n := range cfg.contextNames() {
				c := cfg.Contexts[n]
				if c == nil {
					c = &Context{}
				}
				rows = append(rows, ContextRow{Name: n, Current: n == cfg.CurrentContext, State: c.State,
					SpacesEndpoint: c.SpacesEndpoint, SpacesRegion: c.SpacesRegion,
					TokenFile: c.TokenFile, NodeTokenFile: c.NodeTokenFile})
			}
			if f.Global.Output == "json" {
				return writeJSON(f.IO.Out, rows)
			}
			for _, r := range rows {
				cur, tok := "", "environment"
				if r.Current {
					cur = "*"
				}
				if r.TokenFile != "" {
					tok = r.TokenFile
				}
				t.row(cur, r.Name, dash(r.State), dash(r.SpacesEndpoint), dash(r.SpacesRegion), tok)
			}
			return t.write(f.IO.Out, f.IO.OutTTY)
		},
	}
	addTableFlags(cmd, &to, contextColumns)
	return cmd
}

func newCmdContextDelete(f *Factory) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "delete NAME",
		Short:             "Remove a context (and the token file `auth init` stored for it)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeContextArg(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			cfg, err := loadWithContext(f, name)
			if err != nil {
				return err
			}
			if name == cfg.CurrentContext && !force {
				return usagef("NAME %q: the current context (dynia context use OTHER first, or --force)", name)
			}
			c := cfg.Contexts[name]
			delete(cfg.Contexts, name)
			if name == cfg.CurrentContext {
				cfg.CurrentContext = ""
			}
			if err := cfg.Save(); err != nil {
				return fmt.Errorf("context delete: save config: %w", err)
			}
			// The token file auth init made for this context goes with it;
			// a file the user named is theirs to keep.
			own := filepath.Join(filepath.Dir(cfg.path), "tokens", name+".token")
			if c != nil && c.TokenFile == own {
				if err := os.Remove(own); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("context delete: remove %s: %w", own, err)
				}
			}
			fmt.Fprintf(f.IO.ErrOut, "Context %s deleted\n", name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete it even if it is the current context")
	return cmd
}

// completeContextArg completes the NAME of `context use|delete` (one
// argument).
func completeContextArg(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeContextFlag(f)(cmd, args, toComplete)
	}
}

// completeContextFlag completes --context's value: the config's contexts.
func completeContextFlag(f *Factory) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cfg, err := LoadConfig(f.configPath())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return withPrefix(cfg.contextNames(), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// withPrefix keeps the candidates starting with prefix (shells filter too,
// but fish and zsh show whatever they are given).
func withPrefix(all []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, s := range all {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}
