package jsonstrict

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	ID   string `json:"id"`
	Port int    `json:"port,omitempty"`
}

type base struct {
	Kind string `json:"kind"`
}

type doc struct {
	base
	Name    string            `json:"name"`
	Nodes   []inner           `json:"nodes"`
	Env     map[string]string `json:"env"`
	When    time.Time         `json:"when"`
	Ptr     *inner            `json:"ptr"`
	Skipped string            `json:"-"`
	NoTag   string
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		want      string // "" = accepted
	}{
		{"valid", `{"name":"a","nodes":[{"id":"x","port":1}],"env":{"A":"1","a":"2"},"when":"2025-01-01T00:00:00Z","ptr":{"id":"y"},"kind":"k","NoTag":"n"}`, ""},
		{"whitespace around", " \n{\"name\":\"a\"}\n\t ", ""},
		{"unknown keys are the decoder's business", `{"name":"a","extra":{"deep":[1,2,{"x":null}]}}`, ""},
		{"null and scalars", `{"name":null,"nodes":null,"ptr":null}`, ""},
		{"duplicate key", `{"name":"a","name":"b"}`, `duplicate key "name"`},
		{"duplicate in a node", `{"nodes":[{"id":"a"},{"id":"b","id":"c"}]}`, `nodes[1]: duplicate key "id"`},
		{"duplicate in a pointer", `{"ptr":{"port":1,"port":2}}`, `ptr: duplicate key "port"`},
		{"duplicate map key", `{"env":{"A":"1","A":"2"}}`, `env: duplicate key "A"`},
		{"duplicate through an escape", `{"name":"a","n\u0061me":"b"}`, `duplicate key "name"`},
		{"case variant of a field", `{"Name":"a"}`, `key "Name" must be spelled "name"`},
		{"case variant in a node", `{"nodes":[{"ID":"a"}]}`, `nodes[0]: key "ID" must be spelled "id"`},
		{"case variant of a promoted field", `{"KIND":"a"}`, `key "KIND" must be spelled "kind"`},
		{"case variant of an untagged field", `{"notag":"a"}`, `key "notag" must be spelled "NoTag"`},
		{"kelvin sign folds to k", "{\"\u212aind\":\"a\"}", `must be spelled "kind"`},
		{"long s folds to s", "{\"\u017fkipped\":\"a\",\"\u017fKIPPED\":\"b\"}", `differ only in case`},
		{"two case variants, both unknown", `{"Extra":1,"extra":2}`, `keys "Extra" and "extra" differ only in case`},
		{"case variants inside an unknown value", `{"extra":{"a":1,"A":2}}`, `extra: keys "a" and "A" differ only in case`},
		{"odd keys are quoted in the path", `{"env":{"a\nb.c":{"x":1,"x":2}}}`, `env["a\nb.c"]: duplicate key "x"`},
		{"trailing object", `{"name":"a"} {}`, "trailing data"},
		{"trailing brace", `{"name":"a"}}`, "trailing data"},
		{"trailing garbage", `{"name":"a"}x`, "trailing data"},
		{"trailing string with a newline (fuzz crasher: the error was two lines)", `0"\u000A"`, "trailing data after the JSON document"},
		{"truncated", `{"name":"a"`, "not valid JSON: unexpected end"},
		{"empty", ``, "not valid JSON: unexpected end"},
		{"trailing comma in an object", `{"name":"a",}`, "invalid character"},
		{"trailing comma in an array", `{"nodes":[{"id":"a"},]}`, "invalid character"},
		{"not json", `{name:"a"}`, "not valid JSON: invalid character"},
		{"too deep", `{"extra":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, "nested deeper than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check[doc]([]byte(tc.doc), 1<<10)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check(%s) = %v, want nil", tc.doc, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check(%s) = %v, want an error containing %q", tc.doc, err, tc.want)
			case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
				t.Fatalf("Check(%s): error is not one line: %q", tc.doc, err)
			}
			if tc.want == "" {
				var d doc
				if err := json.Unmarshal([]byte(tc.doc), &d); err != nil {
					t.Fatalf("accepted, but encoding/json refuses it: %v", err)
				}
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	t.Parallel()
	b := []byte(`{"name":"` + strings.Repeat("a", 100) + `"}`)
	if err := Check[doc](b, len(b)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	err := Check[doc](b, len(b)-1)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Reason, "over the limit of 110") {
		t.Fatalf("over the limit: %v", err)
	}
}

// TestCheckDepthWithinLimit: MaxDepth-1 levels of nesting are fine.
func TestCheckDepthWithinLimit(t *testing.T) {
	t.Parallel()
	n := MaxDepth - 1
	if err := CheckType([]byte(strings.Repeat("[", n)+strings.Repeat("]", n)), nil, 1<<10); err != nil {
		t.Fatal(err)
	}
}

// TestCheckKnown: CheckKnown refuses keys no struct field names, with
// their path, and leaves map keys and unmodelled values alone; what Check
// refuses it refuses too.
func TestCheckKnown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		wantPath  string // "" = accepted
		unknown   bool   // the error is ErrUnknownField
	}{
		{"all known", `{"name":"a","nodes":[{"id":"x"}],"env":{"ANY":"1"},"ptr":{"id":"y"},"kind":"k","NoTag":"n"}`, "", false},
		{"unknown at the top", `{"name":"a","zone":"z"}`, "zone", true},
		{"unknown in a node", `{"nodes":[{"id":"x"},{"id":"y","weight":3}]}`, "nodes[1].weight", true},
		{"unknown in a pointer", `{"ptr":{"id":"y","extra":{}}}`, "ptr.extra", true},
		{"odd unknown key is quoted", `{"a.b":1}`, `["a.b"]`, true},
		{"a case variant is still a typo, not a new field", `{"Name":"a"}`, "", false},
		{"a duplicate before the unknown key", `{"name":"a","name":"b","zone":1}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckKnown[doc]([]byte(tc.doc), 1<<10)
			var e *Error
			switch {
			case tc.wantPath == "" && tc.unknown:
				t.Fatal("bad case")
			case tc.wantPath == "" && !tc.unknown:
				if errors.Is(err, ErrUnknownField) {
					t.Fatalf("CheckKnown(%s) = %v, not an unknown field", tc.doc, err)
				}
				if strings.Contains(tc.name, "all known") && err != nil {
					t.Fatalf("CheckKnown(%s) = %v, want nil", tc.doc, err)
				}
				if !strings.Contains(tc.name, "all known") && err == nil {
					t.Fatalf("CheckKnown(%s) = nil, want Check's error", tc.doc)
				}
			case !errors.As(err, &e) || !errors.Is(err, ErrUnknownField) || e.Path != tc.wantPath:
				t.Fatalf("CheckKnown(%s) = %v, want unknown field at %s", tc.doc, err, tc.wantPath)
			}
			if errors.Is(Check[doc]([]byte(tc.doc), 1<<10), ErrUnknownField) {
				t.Fatalf("Check(%s) refuses an unknown field", tc.doc)
			}
		})
	}
}
