package cli

import (
	"fmt"
	"io"
	"time"
)

// Progress prints a multi-step command's steps on stderr: ✓/✗ with elapsed
// time on a TTY, plain lines otherwise. stdout stays for the result.
type Progress struct {
	w     io.Writer
	tty   bool
	quiet bool
}

// NewProgress writes to streams' stderr; quiet (e.g. -o json on a pipe) keeps
// only failures.
func NewProgress(io *IOStreams, quiet bool) *Progress {
	return &Progress{w: io.ErrOut, tty: io.ErrTTY, quiet: quiet}
}

// Step runs fn as a named step and reports how it went.
func (p *Progress) Step(name string, fn func() (string, error)) error {
	start := time.Now()
	if p.tty && !p.quiet {
		fmt.Fprintf(p.w, "• %s …\r", name)
	}
	detail, err := fn()
	el := time.Since(start).Round(10 * time.Millisecond)
	switch {
	case isUsage(err):
		// Bad input is reported once, by the error line itself.
	case err != nil:
		if p.tty {
			fmt.Fprintf(p.w, "✗ %s (%v)\n", name, el)
		} else {
			fmt.Fprintf(p.w, "%s: failed (%v)\n", name, el)
		}
	case p.quiet:
	case p.tty:
		fmt.Fprintf(p.w, "✓ %s%s (%v)\n", name, suffix(detail), el)
	default:
		fmt.Fprintf(p.w, "%s: ok%s (%v)\n", name, suffix(detail), el)
	}
	return err
}

// Info prints a note line.
func (p *Progress) Info(format string, args ...any) {
	if p.quiet {
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}
