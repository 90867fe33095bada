package cli

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// IOStreams are the command's standard streams. stdout carries the answer,
// stderr the progress; TTY-ness decides tables and ✓/✗ steps.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// OutTTY/ErrTTY/InTTY are decided once, so tests can set them.
	OutTTY, ErrTTY, InTTY bool
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		InTTY: isTTY(os.Stdin), OutTTY: isTTY(os.Stdout), ErrTTY: isTTY(os.Stderr),
	}
}

// canPrompt says whether a question can be asked and answered: stdin and
// stderr (where the question goes) are terminals.
func (s *IOStreams) canPrompt() bool { return s.InTTY && s.ErrTTY }

func isTTY(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
