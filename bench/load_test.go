package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoops(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("node-a v1\n"))
	}))
	defer srv.Close()
	for name, start := range map[string]func(string, time.Duration, time.Duration) *Loop{"GET": GetLoop, "POST": PostLoop} {
		n.Store(0)
		l := start(srv.URL, 5*time.Millisecond, 5*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for len(l.Samples()) < 10 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		o := Analyze(l.Stop())
		if o.Total < 10 || o.Failed != 1 || o.Answered["node-a"] != o.Total-1 {
			t.Errorf("%s loop: %+v, want ≥ 10 requests, exactly the third failed, the others answered by node-a", name, o)
		}
	}
}

func TestClosedLoop(t *testing.T) {
	var calls atomic.Int64
	lat, failed, elapsed := ClosedLoop(context.Background(), 3, 100*time.Millisecond, func(ctx context.Context) error {
		if calls.Add(1)%2 == 0 {
			return errors.New("every other call fails")
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if len(lat) == 0 || failed == 0 || elapsed <= 0 {
		t.Errorf("ClosedLoop: %d ok, %d failed in %v; want both", len(lat), failed, elapsed)
	}
}
