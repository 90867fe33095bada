package cli

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

// NewCmdState is `dynia state check` (can this store hold dynia's state?)
// and `dynia state resign` (sign the state as it is, after it was changed
// outside dynia).
func NewCmdState(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect the state store; re-sign a state changed outside dynia",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "check",
		Aliases: []string{"doctor"},
		Short:   "Probe the bucket: reachable, credentials valid, conditional writes honoured",
		Long: "Writes and deletes a few scratch objects under _dynia/probe/ to learn whether the store\n" +
			"honours If-Match and If-None-Match. Where it does not, every write command refuses\n" +
			"unless --allow-unsafe-writes is given: concurrent writers could silently lose changes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := f.Store(cmd.Context())
			if err != nil {
				return err
			}
			res, err := bucket.Probe(cmd.Context(), store.B)
			if err != nil {
				return err
			}
			if f.Global.Output == "json" {
				problems := res.Problems
				if problems == nil {
					problems = []string{}
				}
				if err := writeJSON(f.IO.Out, map[string]any{"store": store.B.String(), "conditional_writes": res.ConditionalWrites, "problems": problems}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(f.IO.Out, "store:              %s\nreachable:          yes\ncredentials:        valid\nconditional writes: %v\n",
					store.B, yesNo(res.ConditionalWrites))
				for _, p := range res.Problems {
					fmt.Fprintf(f.IO.Out, "problem:            %s\n", p)
				}
			}
			if !res.ConditionalWrites {
				return fmt.Errorf("store %s ignores conditional writes: write commands will refuse without --allow-unsafe-writes", store.B)
			}
			return nil
		},
	})
	var name string
	var yes bool
	resign := &cobra.Command{
		Use:   "resign --name N [--yes]",
		Short: "Sign the cluster's state object as the bucket holds it now (after it was changed outside dynia)",
		Long: "Every state dynia writes is signed with the cluster's state key, and every reader refuses one that\n" +
			"does not verify (docs/security.md). When the object was replaced — by someone holding the bucket key,\n" +
			"or a first signed write was interrupted — every command refuses the cluster. Look at the object\n" +
			"first (it is JSON: the \"payload\" of the envelope); resign then signs it as it is, with this\n" +
			"machine's key, at a generation above every one the nodes report, so nodes apply it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			what := fmt.Sprintf("sign cluster %q's state as the bucket holds it, unverified", name)
			if err := confirmDestructive(f.IO, yes, what, "Sign cluster "+name+"'s state as the bucket holds it, unverified?"); err != nil {
				return err
			}
			return resignState(cmd.Context(), f, name)
		},
	}
	resign.Flags().StringVar(&name, "name", "", "cluster name")
	addYesFlag(resign, &yes)
	cmd.AddCommand(resign)
	return cmd
}

// resignState is `dynia state resign`: the store's Resign at a generation
// above this machine's newest accepted one and every node's reported one
// (reports read unverified: a number only ever raises the generation).
func resignState(ctx context.Context, f *Factory, name string) error {
	store, err := f.WritableStore(ctx)
	if err != nil {
		return err
	}
	floor, err := f.stateKeys().Seen(name)
	if err != nil {
		return err
	}
	objs, err := store.B.List(ctx, cluster.ClusterPrefix(name)+"nodes/")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, "/status.json") {
			continue
		}
		obj, err := store.B.Get(ctx, o.Key, "")
		if err != nil {
			continue
		}
		if b, _, err := signing.Unwrap(obj.Body); err == nil {
			if r, err := report.DecodeStatus(b); err == nil && r.AppliedGeneration > floor && r.AppliedGeneration < math.MaxInt64/4 {
				floor = r.AppliedGeneration
			}
		}
	}
	prev := ""
	if obj, err := store.B.Get(ctx, cluster.StateKey(name), ""); err == nil {
		if st, err := cluster.DecodeSigned(obj.Body, nil); err == nil {
			prev = st.SigningKey
		}
	}
	st, err := store.Resign(ctx, name, floor)
	if err != nil {
		return err
	}
	if prev != "" && prev != st.SigningKey {
		fmt.Fprintf(f.IO.ErrOut, "warning: the document named signing key %s; nodes made with it refuse this state (signed with %s) until they are replaced\n", prev, st.SigningKey)
	}
	return printCluster(f, st)
}

func yesNo(b bool) string {
	if b {
		return "honoured"
	}
	return "IGNORED"
}
