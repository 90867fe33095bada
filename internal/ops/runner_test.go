package ops

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is a Reporter that records what it was shown.
type recorder struct{ lines []string }

func (r *recorder) Step(name string, fn func() (string, error)) error {
	detail, err := fn()
	if err != nil {
		r.lines = append(r.lines, name+": failed")
		return err
	}
	r.lines = append(r.lines, name+": ok "+detail)
	return nil
}

func (r *recorder) Info(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// TestRun: steps run in order, an unnamed one unreported; the first that
// fails stops the rest, and the error names it and wraps its error.
func TestRun(t *testing.T) {
	boom := errors.New("boom")
	var ran []string
	step := func(name string, err error) Step {
		return Step{name, func(context.Context) (string, error) {
			ran = append(ran, name)
			return "d-" + name, err
		}}
	}
	tests := []struct {
		name      string
		steps     []Step
		wantRan   []string
		wantLines []string
		wantStep  string // "" when Run succeeds
	}{
		{"all succeed", []Step{step("a", nil), step("", nil), step("c", nil)},
			[]string{"a", "", "c"}, []string{"a: ok d-a", "c: ok d-c"}, ""},
		{"second fails", []Step{step("a", nil), step("b", boom), step("c", nil)},
			[]string{"a", "b"}, []string{"a: ok d-a", "b: failed"}, "b"},
		{"unnamed fails", []Step{step("", boom), step("c", nil)},
			[]string{""}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ran = nil
			r := &recorder{}
			err := Run(context.Background(), r, tc.steps...)
			if diff := cmp.Diff(tc.wantRan, ran); diff != "" {
				t.Errorf("steps run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantLines, r.lines); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
			wantErr := tc.wantStep != "" || tc.name == "unnamed fails"
			if !wantErr {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.wantStep || !errors.Is(err, boom) || err.Error() != "boom" {
				t.Fatalf("Run: %v (%#v), want a *StepError for step %q wrapping boom, its text unchanged", err, err, tc.wantStep)
			}
		})
	}
}

// TestRunCancelled: a cancelled context stops Run before the next step.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := 0
	err := Run(ctx, &recorder{},
		Step{"a", func(context.Context) (string, error) { ran++; cancel(); return "", nil }},
		Step{"b", func(context.Context) (string, error) { ran++; return "", nil }})
	var se *StepError
	if ran != 1 || !errors.As(err, &se) || se.Step != "b" || !errors.Is(err, context.Canceled) {
		t.Fatalf("ran %d steps, err %v: want 1 and a cancelled step b", ran, err)
	}
}
