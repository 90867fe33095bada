package bucket_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
)

// rejectConds is a store that fails every conditional write outright, like
// an S3 server answering 501 NotImplemented to If-None-Match.
type rejectConds struct{ bucket.Store }

func (s rejectConds) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	if cond != (bucket.Cond{}) {
		return "", &bucket.Error{Op: "put", Store: s.String(), Key: key, Detail: "HTTP 501 NotImplemented"}
	}
	return s.Store.Put(ctx, key, body, cond)
}

func TestProbeStoreRejectingConditions(t *testing.T) {
	t.Parallel()
	inner := openFileStore(t)
	s := rejectConds{inner}
	res, err := bucket.Probe(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if res.ConditionalWrites || len(res.Problems) != 1 {
		t.Errorf("Probe = %+v, want unsafe with one problem", res)
	}
	assertRefused(t, s)
	if infos, err := inner.List(context.Background(), ""); err != nil || len(infos) != 0 {
		t.Errorf("probe left objects behind: %v %v", infos, err)
	}
}

func TestProbeUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: connection refused, retried briefly, then an error.
	s, err := bucket.Open(context.Background(), "s3://b/p", bucket.Options{
		Endpoint: "http://127.0.0.1:1", AccessKeyID: "K", SecretAccessKey: testSecret, MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = bucket.RequireSafe(context.Background(), s, true)
	if err == nil || errors.Is(err, bucket.ErrUnsafeStore) {
		t.Errorf("RequireSafe on an unreachable store: %v, want a probe error even with allowUnsafe", err)
	}
}

// resendConds sends every conditional write twice and returns the second
// answer, as the S3 backend's retry does when the first answer is lost:
// a write that was applied answers 412 the second time.
type resendConds struct{ bucket.Store }

func (s resendConds) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	if cond == (bucket.Cond{}) {
		return s.Store.Put(ctx, key, body, cond)
	}
	_, _ = s.Store.Put(ctx, key, body, cond) // its answer is "lost"
	return s.Store.Put(ctx, key, body, cond)
}

// TestProbeLostAnswers: a probe whose writes lose their answers (each
// retried write gets 412 although it was applied) still finds the store
// safe, reading back what it wrote instead of calling it unsafe.
func TestProbeLostAnswers(t *testing.T) {
	t.Parallel()
	inner := openFileStore(t)
	res, err := bucket.Probe(context.Background(), resendConds{inner})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConditionalWrites || len(res.Problems) != 0 {
		t.Errorf("Probe = %+v, want safe with no problem", res)
	}
	if infos, err := inner.List(context.Background(), ""); err != nil || len(infos) != 0 {
		t.Errorf("probe left objects behind: %v %v", infos, err)
	}
}
