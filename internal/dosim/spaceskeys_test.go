package dosim

import (
	"fmt"
	"sync"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"
)

// TestSpacesKeyHooks: creating, updating and deleting a Spaces key each
// fire OnSpacesKeyChange once, in order, before the API answers, with the
// key's grants and its secret (which only the create answer shows).
func TestSpacesKeyHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	var secret string
	_, hs, _ := newSim(t, Options{OnSpacesKeyChange: func(k SpacesKey, deleted bool) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, fmt.Sprintf("%s %v deleted=%v secret=%v", k.Name, k.Grants, deleted, k.Secret != "" && k.Secret == secret))
	}})
	c := godoClient(t, hs, "tok")
	ctx := t.Context()
	// The create hook ran before the answer, so it is counted here and the
	// secret compared in the later calls.
	k, _, err := c.SpacesKeys.Create(ctx, &godo.SpacesKeyCreateRequest{Name: "a", Grants: []*godo.Grant{{Bucket: "b1", Permission: godo.SpacesKeyReadWrite}}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(events) != 1 {
		t.Fatalf("create: %d hook calls before the answer, want 1", len(events))
	}
	secret = k.SecretKey
	events = nil
	mu.Unlock()
	if _, _, err := c.SpacesKeys.Update(ctx, k.AccessKey, &godo.SpacesKeyUpdateRequest{Name: "a2", Grants: []*godo.Grant{{Bucket: "b1", Permission: godo.SpacesKeyRead}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SpacesKeys.Delete(ctx, k.AccessKey); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SpacesKeys.Delete(ctx, k.AccessKey); err == nil {
		t.Fatal("deleting a deleted key succeeded")
	}
	want := []string{
		"a2 [{b1 read}] deleted=false secret=true",
		"a2 [{b1 read}] deleted=true secret=true",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
}
