package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/report"
)

// LogsOptions are `node logs`' inputs.
type LogsOptions struct {
	Name      string
	Node      string
	Component string
	Since     time.Duration
}

// NewCmdNodeLogs is `dynia node logs`: a node's recent log lines without
// SSH, from the redacted tail its dynia-pull uploads to the bucket.
func NewCmdNodeLogs(f *Factory, runF func(*LogsOptions) error) *cobra.Command {
	o := &LogsOptions{}
	cmd := &cobra.Command{
		Use:   "logs --name N --node ID [--component pull|haproxy|keepalived|cloud-init|app] [--since D]",
		Short: "Show a node's recent log lines (uploaded by the node; no SSH)",
		Long: "Each node uploads a bounded, secret-redacted tail of its logs to the state bucket: at start, at once\n" +
			"when it reports a new error, and otherwise every 10 minutes when they changed. This shows the last\n" +
			"upload and when it was made.",
		Example: "  dynia node logs --name myapp --node misty-owl\n" +
			"  dynia node logs --name myapp --node misty-owl --component cloud-init\n" +
			"  dynia node logs --name myapp --node misty-owl --component haproxy --since 15m",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if err := checkNodeID(o.Node); err != nil {
				return err
			}
			if !slices.Contains(report.LogComponents, o.Component) {
				return usagef("--component %q: must be one of %s", o.Component, strings.Join(report.LogComponents, ", "))
			}
			if o.Since < 0 {
				return usagef("--since %q: must not be negative", o.Since)
			}
			if runF != nil {
				return runF(o)
			}
			return nodeLogs(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "name", "", "cluster name")
	fl.StringVar(&o.Node, "node", "", "node id (two words, e.g. misty-owl)")
	fl.StringVar(&o.Component, "component", report.LogPull, "which log: "+strings.Join(report.LogComponents, ", "))
	fl.DurationVar(&o.Since, "since", 0, "only lines from the last D (lines without a timestamp are kept)")
	return cmd
}

func nodeLogs(ctx context.Context, f *Factory, o *LogsOptions) error {
	store, st, err := f.loadState(ctx, o.Name)
	if err != nil {
		return err
	}
	if st.Node(o.Node) == nil {
		return usagef("--node %q: not a node of cluster %s", o.Node, o.Name)
	}
	obj, err := store.B.Get(ctx, report.LogKey(o.Name, o.Node, o.Component), "")
	if errors.Is(err, bucket.ErrNotFound) {
		return fmt.Errorf("node %s has not uploaded a %s log yet (it uploads once dynia-pull runs; "+
			"a node that never got that far has none: check the droplet in the DigitalOcean console)", o.Node, o.Component)
	}
	if err != nil {
		return err
	}
	uploaded, body := report.ParseLogTail(obj.Body)
	if !uploaded.IsZero() {
		fmt.Fprintf(f.IO.ErrOut, "%s log of %s, uploaded %s (%v ago)\n", o.Component, o.Node,
			uploaded.Local().Format(time.RFC3339), time.Since(uploaded).Round(time.Second))
	}
	var cutoff time.Time
	if o.Since > 0 {
		cutoff = time.Now().Add(-o.Since)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), report.LogTailBytes+1)
	for sc.Scan() {
		line := sc.Text()
		if !cutoff.IsZero() {
			if t, ok := lineTime(line); ok && t.Before(cutoff) {
				continue
			}
		}
		fmt.Fprintln(f.IO.Out, line)
	}
	return sc.Err()
}

// lineTime finds a line's timestamp: slog's JSON "time", a leading RFC
// 3339 time, or keepalived's ctime date.
func lineTime(line string) (time.Time, bool) {
	if strings.HasPrefix(line, "{") {
		var v struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &v) == nil && !v.Time.IsZero() {
			return v.Time, true
		}
	}
	if f, _, ok := strings.Cut(line, " "); ok {
		if t, err := time.Parse(time.RFC3339, f); err == nil {
			return t, true
		}
	}
	if len(line) >= 24 {
		if t, err := time.ParseInLocation("Mon Jan _2 15:04:05 2006", line[:24], time.Local); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
