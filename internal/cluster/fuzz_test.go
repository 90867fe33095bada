package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dynia/dynia/internal/jsonstrict"
)

// FuzzDecodeState: Decode never panics; what it refuses it refuses with one
// line; what it accepts is one well-formed document without ambiguous
// keys, passes Validate, and survives Encode and Decode unchanged. Seeds:
// testdata/fuzz/FuzzDecodeState (issue 14's reproductions, duplicate and
// case-variant keys) and the golden state.
func FuzzDecodeState(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "state.golden"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted a document encoding/json calls invalid: %q", b)
		}
		if err := jsonstrict.Check[State](b, MaxStateBytes); err != nil {
			t.Fatalf("accepted a document jsonstrict refuses: %v", err)
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Decode accepted a state Validate refuses: %v", err)
		}
		out, err := s.Encode()
		if err != nil {
			if len(b) > MaxStateBytes/2 {
				return // indentation may take a large compact document over the limit
			}
			t.Fatalf("Encode of a decoded state: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode of Encode's output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(s, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Encode/Decode round trip (-first +second):\n%s", diff)
		}
	})
}
