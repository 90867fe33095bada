package bench

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/dynia/dynia/internal/fsutil"
)

//go:embed report.md.tmpl
var reportTemplate string

// LoadResults returns the newest result of every benchmark found under
// resultsDir (one directory per run, a <benchmark>.json each), in the
// order of Benchmarks; a quick-mode result only where no full one exists.
func LoadResults(resultsDir string) ([]Result, error) {
	newest := map[string]Result{}
	files, err := filepath.Glob(filepath.Join(resultsDir, "*", "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read result: %w", err)
		}
		var res Result
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, fmt.Errorf("result %s: %w", f, err)
		}
		if res.Name == "" || filepath.Base(filepath.Dir(f)) != res.RunID {
			continue
		}
		// A full run's result wins over any quick one (BENCH_QUICK=1 checks
		// the harness; its counts are too small to quote).
		if cur, ok := newest[res.Name]; !ok || (cur.Quick && !res.Quick) || (cur.Quick == res.Quick && res.Finished.After(cur.Finished)) {
			newest[res.Name] = res
		}
	}
	var out []Result
	for _, b := range Benchmarks {
		if res, ok := newest[b.Name]; ok {
			out = append(out, res)
		}
	}
	return out, nil
}

// WriteReport regenerates the report from the newest results and the
// hand-written notes (a file of Markdown appended as the "Notes" part).
func WriteReport(resultsDir, notesPath, reportPath string) error {
	results, err := LoadResults(resultsDir)
	if err != nil {
		return err
	}
	notes, err := os.ReadFile(notesPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read notes: %w", err)
	}
	b, err := RenderReport(results, string(notes), resultsDir, filepath.Dir(reportPath))
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(reportPath, b, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// RenderReport renders the Markdown page. Links to plots and raw files are
// relative to reportDir.
func RenderReport(results []Result, notes, resultsDir, reportDir string) ([]byte, error) {
	rel := func(run, file string) string {
		p, err := filepath.Rel(reportDir, filepath.Join(resultsDir, run, file))
		if err != nil {
			return filepath.Join(resultsDir, run, file)
		}
		return filepath.ToSlash(p)
	}
	var targets []struct {
		Target
		Bench string
	}
	runs := map[string]bool{}
	for _, r := range results {
		runs[r.RunID] = true
		for _, t := range r.Targets {
			targets = append(targets, struct {
				Target
				Bench string
			}{t, r.Name})
		}
	}
	var runIDs []string
	for id := range runs {
		runIDs = append(runIDs, id)
	}
	sort.Strings(runIDs)
	var machine *Machine
	if len(results) > 0 {
		m := results[len(results)-1].Machine
		for _, r := range results {
			if r.Finished.After(results[len(results)-1].Finished) {
				m = r.Machine
			}
		}
		machine = &m
	}
	funcs := template.FuncMap{
		"rel": rel,
		"row": func(cells []string) string {
			esc := make([]string, len(cells))
			for i, c := range cells {
				esc[i] = strings.ReplaceAll(strings.ReplaceAll(c, "|", `\|`), "\n", " ")
			}
			return "| " + strings.Join(esc, " | ") + " |"
		},
		"sep":  func(n int) string { return "|" + strings.Repeat("---|", n) },
		"date": func(r Result) string { return r.Finished.Format("2006-01-02 15:04 MST") },
		"mins": func(r Result) string { return r.Finished.Sub(r.Started).Round(1e9).String() },
		"versions": func(m Machine) string {
			var keys []string
			for k := range m.Versions {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var out []string
			for _, k := range keys {
				if v := m.Versions[k]; v != "" {
					out = append(out, k+": "+v)
				}
			}
			return strings.Join(out, "; ")
		},
		"num": func(i int) int { return i + 1 },
	}
	t, err := template.New("report").Funcs(funcs).Parse(reportTemplate)
	if err != nil {
		return nil, fmt.Errorf("report template: %w", err)
	}
	var buf bytes.Buffer
	err = t.Execute(&buf, map[string]any{
		"Results": results, "Targets": targets, "Runs": runIDs, "Machine": machine,
		"Notes": strings.TrimSpace(notes), "ResultsDir": resultsDir,
	})
	if err != nil {
		return nil, fmt.Errorf("render report: %w", err)
	}
	return buf.Bytes(), nil
}
