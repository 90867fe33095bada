package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// column is one column of a table: Header is what the header line prints,
// Name the short name (doctl's style: ID, PublicIP) --format takes. Either
// selects the column, in any case, with spaces, '_' and '-' ignored:
// `--format id,public_ip` and `--format "ID,Public IP"` are the same.
type column struct{ Name, Header string }

// TableOptions are the flags of every command that prints a table.
type TableOptions struct {
	// Format is --format: the columns to print, comma-separated, in that
	// order ("": all, as the command orders them).
	Format string
	// NoHeader is --no-header: rows only.
	NoHeader bool
}

// addTableFlags puts --format and --no-header on cmd; the help lists cols.
func addTableFlags(cmd *cobra.Command, o *TableOptions, cols []column) {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	cmd.Flags().StringVar(&o.Format, "format", "",
		"columns to print, comma-separated, in that order (text output; names in any case; no Go templates: use -o json): "+strings.Join(names, ", "))
	cmd.Flags().BoolVar(&o.NoHeader, "no-header", false, "print the rows without the header line")
}

// normColumn is a column name as --format matches it.
func normColumn(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-':
			return -1
		}
		return r
	}, strings.ToLower(s))
}

// columns resolves --format against cols: the indexes to print, in order.
// An empty or unknown name is bad input naming --format and its value, so
// commands call it before any read.
func (o TableOptions) columns(cols []column) ([]int, error) {
	if strings.TrimSpace(o.Format) == "" {
		all := make([]int, len(cols))
		for i := range cols {
			all[i] = i
		}
		return all, nil
	}
	if strings.Contains(o.Format, "{{") {
		return nil, usagef("--format %q: takes column names now, e.g. --format %s,%s (for a template, use -o json and jq)",
			o.Format, cols[0].Name, cols[len(cols)-1].Name)
	}
	var sel []int
	for _, name := range strings.Split(o.Format, ",") {
		i := findColumn(cols, name)
		if i < 0 {
			names := make([]string, len(cols))
			for j, c := range cols {
				names[j] = c.Name
			}
			return nil, usagef("--format %q: unknown column %q (columns: %s)", o.Format, strings.TrimSpace(name), strings.Join(names, ", "))
		}
		sel = append(sel, i)
	}
	return sel, nil
}

func findColumn(cols []column, name string) int {
	n := normColumn(name)
	if n == "" {
		return -1
	}
	for i, c := range cols {
		if normColumn(c.Name) == n || normColumn(c.Header) == n {
			return i
		}
	}
	return -1
}

// table is the one writer of every table the CLI prints: aligned on a
// terminal, tab-separated when piped (for cut and awk), as gh prints its
// tables; --format picks and orders the columns, --no-header drops the
// header line.
type table struct {
	cols     []column
	sel      []int
	noHeader bool
	rows     [][]string
}

// newTable is a table of cols as o selects them (o checked by columns).
func newTable(cols []column, o TableOptions) (*table, error) {
	sel, err := o.columns(cols)
	if err != nil {
		return nil, err
	}
	return &table{cols: cols, sel: sel, noHeader: o.NoHeader}, nil
}

// row adds one row: a cell per column of the table, in the columns' order.
func (t *table) row(cells ...string) {
	if len(cells) != len(t.cols) {
		panic(fmt.Sprintf("table row has %d cells for %d columns", len(cells), len(t.cols)))
	}
	t.rows = append(t.rows, cells)
}

// write prints the table to w: aligned when aligned (a terminal), else
// one tab between cells. Tabs and newlines inside a cell become spaces.
func (t *table) write(w io.Writer, aligned bool) error {
	out := w
	var tw *tabwriter.Writer
	if aligned {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		out = tw
	}
	line := func(cells []string) error {
		pick := make([]string, len(t.sel))
		for i, j := range t.sel {
			pick[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(cells[j])
		}
		_, err := fmt.Fprintln(out, strings.Join(pick, "\t"))
		return err
	}
	if !t.noHeader {
		hdr := make([]string, len(t.cols))
		for i, c := range t.cols {
			hdr[i] = c.Header
		}
		if err := line(hdr); err != nil {
			return err
		}
	}
	for _, r := range t.rows {
		if err := line(r); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}
