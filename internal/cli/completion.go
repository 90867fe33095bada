package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

// Shell completion: cobra's own `dynia completion bash|zsh|fish|powershell`
// prints the script; the script calls the hidden `dynia __complete ARGS`,
// which answers with the functions below. Completion must never hang a
// shell or print an error into it: the bucket is asked with a short
// timeout, and any failure completes nothing.

// completionTimeout bounds the bucket reads one completion makes.
const completionTimeout = 3 * time.Second

// registerCompletions adds the dynamic completions to every command of the
// tree: --context (the config's contexts), --name (the state bucket's
// clusters) and --node (the nodes of the cluster in --name).
func registerCompletions(root *cobra.Command, f *Factory) {
	_ = root.RegisterFlagCompletionFunc("context", completeContextFlag(f))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// A command that makes a cluster names a new one: no candidates.
		if fl := c.LocalFlags().Lookup("name"); fl != nil && c.Name() == "create-ha" {
			_ = c.RegisterFlagCompletionFunc("name", cobra.NoFileCompletions)
		} else if fl != nil {
			_ = c.RegisterFlagCompletionFunc("name", completeClusterNames(f))
		}
		if fl := c.LocalFlags().Lookup("node"); fl != nil {
			_ = c.RegisterFlagCompletionFunc("node", completeNodeIDs(f))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeClusterNames lists the clusters in the state bucket.
func completeClusterNames(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := completionContext(cmd)
		defer cancel()
		store, err := f.Store(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := store.List(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNodeIDs lists the node ids of the cluster named by --name (none
// without it).
func completeNodeIDs(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		name, _ := cmd.Flags().GetString("name")
		if name == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionContext(cmd)
		defer cancel()
		_, st, err := f.loadState(ctx, name)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ids := make([]string, 0, len(st.Nodes))
		for _, n := range st.Nodes {
			ids = append(ids, n.ID)
		}
		return withPrefix(ids, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}
