package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/bucket"
)

// NewCmdState is `dynia state check`: can this store hold dynia's state?
func NewCmdState(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect the state store",
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
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "honoured"
	}
	return "IGNORED"
}
