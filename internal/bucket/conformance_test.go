package bucket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/google/go-cmp/cmp"
)

// opener returns a fresh, empty store for one subtest.
type opener func(t *testing.T) bucket.Store

// runConformance is the one behaviour suite every backend must pass.
func runConformance(t *testing.T, open opener) {
	ctx := context.Background()

	t.Run("GetMissing", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		_, err := s.Get(ctx, "clusters/demo/state.json", "")
		if !errors.Is(err, bucket.ErrNotFound) {
			t.Fatalf("Get missing: %v, want ErrNotFound", err)
		}
		var be *bucket.Error
		if !errors.As(err, &be) || be.Key != "clusters/demo/state.json" || be.Op != "get" {
			t.Errorf("error %#v does not name op and key", err)
		}
		if !strings.Contains(err.Error(), s.String()+"/clusters/demo/state.json") {
			t.Errorf("message %q does not name the location", err)
		}
	})

	t.Run("PutGet", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		etag, err := s.Put(ctx, "clusters/demo/state.json", []byte(`{"a":1}`), bucket.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		if etag == "" {
			t.Fatal("Put returned an empty ETag")
		}
		obj, err := s.Get(ctx, "clusters/demo/state.json", "")
		if err != nil {
			t.Fatal(err)
		}
		if string(obj.Body) != `{"a":1}` || obj.ETag != etag || obj.LastModified.IsZero() {
			t.Errorf("Get = %q %s %v, want body, ETag %s and a time", obj.Body, obj.ETag, obj.LastModified, etag)
		}
		// Unconditional overwrite, and an empty object.
		etag2, err := s.Put(ctx, "clusters/demo/state.json", nil, bucket.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		if etag2 == etag {
			t.Error("ETag did not change with the content")
		}
		obj, err = s.Get(ctx, "clusters/demo/state.json", "")
		if err != nil || len(obj.Body) != 0 || obj.ETag != etag2 {
			t.Errorf("Get empty = %+v, %v", obj, err)
		}
	})

	t.Run("SameContentSameETag", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		e1, err1 := s.Put(ctx, "a", []byte("x"), bucket.Cond{})
		e2, err2 := s.Put(ctx, "b", []byte("x"), bucket.Cond{})
		if err1 != nil || err2 != nil || e1 != e2 {
			t.Errorf("ETags %s %s (%v %v): want equal for equal content", e1, e2, err1, err2)
		}
	})

	t.Run("NotModified", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		etag := mustPut(t, s, "k", "v1", bucket.Cond{})
		if _, err := s.Get(ctx, "k", etag); !errors.Is(err, bucket.ErrNotModified) {
			t.Errorf("Get with current ETag: %v, want ErrNotModified", err)
		}
		if _, err := s.Get(ctx, "k", strings.Trim(etag, `"`)); !errors.Is(err, bucket.ErrNotModified) {
			t.Errorf("Get with unquoted current ETag: %v, want ErrNotModified", err)
		}
		mustPut(t, s, "k", "v2", bucket.Cond{})
		obj, err := s.Get(ctx, "k", etag)
		if err != nil || string(obj.Body) != "v2" {
			t.Errorf("Get with stale ETag = %v, %v; want v2", obj, err)
		}
	})

	t.Run("CreateOnly", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, "k", "first", bucket.Cond{IfNoneMatch: true})
		_, err := s.Put(ctx, "k", []byte("second"), bucket.Cond{IfNoneMatch: true})
		if !errors.Is(err, bucket.ErrPrecondition) {
			t.Fatalf("second create-only put: %v, want ErrPrecondition", err)
		}
		if !strings.Contains(err.Error(), "k") {
			t.Errorf("message %q does not name the key", err)
		}
		if got := mustGet(t, s, "k"); got != "first" {
			t.Errorf("content = %q after refused put, want first", got)
		}
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		e1 := mustPut(t, s, "k", "v1", bucket.Cond{})
		e2 := mustPut(t, s, "k", "v2", bucket.Cond{IfMatch: e1})
		if _, err := s.Put(ctx, "k", []byte("v3"), bucket.Cond{IfMatch: e1}); !errors.Is(err, bucket.ErrPrecondition) {
			t.Errorf("stale If-Match put: %v, want ErrPrecondition", err)
		}
		if got := mustGet(t, s, "k"); got != "v2" {
			t.Errorf("content = %q, want v2", got)
		}
		// Unquoted ETags are accepted too.
		mustPut(t, s, "k", "v4", bucket.Cond{IfMatch: strings.Trim(e2, `"`)})
		if _, err := s.Put(ctx, "missing", []byte("x"), bucket.Cond{IfMatch: e1}); !errors.Is(err, bucket.ErrPrecondition) {
			t.Errorf("If-Match put on a missing key: %v, want ErrPrecondition", err)
		}
		if _, err := s.Get(ctx, "missing", ""); !errors.Is(err, bucket.ErrNotFound) {
			t.Errorf("missing key after refused put: %v, want ErrNotFound", err)
		}
		if _, err := s.Put(ctx, "k", []byte("x"), bucket.Cond{IfMatch: e2, IfNoneMatch: true}); err == nil {
			t.Error("If-Match together with If-None-Match: want an error")
		}
	})

	t.Run("ConcurrentCAS", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		etag := mustPut(t, s, "state.json", "gen 0", bucket.Cond{})
		const n = 16
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Put(ctx, "state.json", fmt.Appendf(nil, "writer %d", i), bucket.Cond{IfMatch: etag})
			}()
		}
		wg.Wait()
		won, lost := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, bucket.ErrPrecondition):
				lost++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if won != 1 || lost != n-1 {
			t.Errorf("%d won, %d lost; want exactly 1 winner of %d", won, lost, n)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, "dir/k", "v", bucket.Cond{})
		if err := s.Delete(ctx, "dir/k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "dir/k", ""); !errors.Is(err, bucket.ErrNotFound) {
			t.Errorf("Get after Delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "dir/k"); err != nil {
			t.Errorf("Delete missing: %v, want nil", err)
		}
		if err := s.Delete(ctx, "never/was"); err != nil {
			t.Errorf("Delete never-existing: %v, want nil", err)
		}
		if infos, err := s.List(ctx, ""); err != nil || len(infos) != 0 {
			t.Errorf("List after delete = %v, %v; want empty", infos, err)
		}
		// The key can be created again, create-only.
		mustPut(t, s, "dir/k", "again", bucket.Cond{IfNoneMatch: true})
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		etags := map[string]string{}
		for _, k := range []string{"b/1", "a/2", "a2", "a/1", "a/sub/3"} {
			etags[k] = mustPut(t, s, k, "content of "+k, bucket.Cond{})
		}
		keys := func(prefix string) []string {
			t.Helper()
			infos, err := s.List(ctx, prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", prefix, err)
			}
			out := []string{}
			for _, in := range infos {
				out = append(out, in.Key)
				if in.ETag != etags[in.Key] || in.Size != int64(len("content of "+in.Key)) || in.LastModified.IsZero() {
					t.Errorf("List(%q) entry %+v: want ETag %s, size and time", prefix, in, etags[in.Key])
				}
			}
			return out
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"", []string{"a/1", "a/2", "a/sub/3", "a2", "b/1"}},
			{"a/", []string{"a/1", "a/2", "a/sub/3"}},
			{"a", []string{"a/1", "a/2", "a/sub/3", "a2"}},
			{"a/s", []string{"a/sub/3"}},
			{"zzz/", []string{}},
			{"nothing/deeper/", []string{}},
		} {
			if diff := cmp.Diff(tc.want, keys(tc.prefix)); diff != "" {
				t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
			}
		}
	})

	t.Run("InvalidKeys", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for _, k := range []string{"", "/abs", "a//b", "a/../b", "..", "./a", "x/.dynia-lock", strings.Repeat("k", 1025)} {
			if _, err := s.Put(ctx, k, []byte("x"), bucket.Cond{}); err == nil || errors.Is(err, bucket.ErrPrecondition) {
				t.Errorf("Put(%.20q): %v, want an invalid-key error", k, err)
			}
			if _, err := s.Get(ctx, k, ""); err == nil || errors.Is(err, bucket.ErrNotFound) {
				t.Errorf("Get(%.20q): %v, want an invalid-key error", k, err)
			}
		}
	})

	t.Run("Probe", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		res, err := bucket.Probe(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !res.ConditionalWrites || len(res.Problems) != 0 {
			t.Errorf("Probe = %+v, want conditional writes and no problems", res)
		}
		if err := bucket.RequireSafe(ctx, s, false); err != nil {
			t.Errorf("RequireSafe: %v", err)
		}
		if infos, err := s.List(ctx, ""); err != nil || len(infos) != 0 {
			t.Errorf("probe left objects behind: %v %v", infos, err)
		}
	})

	t.Run("ProbeUnsafe", func(t *testing.T) {
		t.Parallel()
		s := ignoreConds{open(t)}
		res, err := bucket.Probe(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if res.ConditionalWrites || len(res.Problems) < 2 {
			t.Errorf("Probe of a store ignoring conditions = %+v, want unsafe with problems", res)
		}
		assertRefused(t, s)
	})
}

// ignoreConds is a store that drops every write condition, like an S3
// server that does not implement If-Match / If-None-Match.
type ignoreConds struct{ bucket.Store }

func (s ignoreConds) Put(ctx context.Context, key string, body []byte, _ bucket.Cond) (string, error) {
	return s.Store.Put(ctx, key, body, bucket.Cond{})
}

// assertRefused checks RequireSafe refuses s, and allows it when told to.
func assertRefused(t *testing.T, s bucket.Store) {
	t.Helper()
	ctx := context.Background()
	err := bucket.RequireSafe(ctx, s, false)
	var ue *bucket.UnsafeStoreError
	if !errors.Is(err, bucket.ErrUnsafeStore) || !errors.As(err, &ue) || len(ue.Problems) == 0 {
		t.Errorf("RequireSafe = %v, want an UnsafeStoreError", err)
	} else if !strings.Contains(err.Error(), "If-") {
		t.Errorf("RequireSafe message %q does not explain the problem", err)
	}
	if err := bucket.RequireSafe(ctx, s, true); err != nil {
		t.Errorf("RequireSafe(allowUnsafe) = %v, want nil", err)
	}
}

func mustPut(t *testing.T, s bucket.Store, key, body string, cond bucket.Cond) string {
	t.Helper()
	etag, err := s.Put(context.Background(), key, []byte(body), cond)
	if err != nil {
		t.Fatalf("Put(%s, %+v): %v", key, cond, err)
	}
	return etag
}

func mustGet(t *testing.T, s bucket.Store, key string) string {
	t.Helper()
	obj, err := s.Get(context.Background(), key, "")
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return string(bytes.Clone(obj.Body))
}
