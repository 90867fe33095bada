package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAnalyze(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(at, took int, ok bool, body string) Sample { return Sample{t0.Add(ms(at)), ms(took), ok, body} }
	for _, tc := range []struct {
		name    string
		samples []Sample
		want    Outcome
	}{
		{"all good", []Sample{s(0, 5, true, "a v1"), s(50, 5, true, "b v1")},
			Outcome{Total: 2, Answered: map[string]int{"a": 1, "b": 1}}},
		// The outage runs from the first failure's start (100) to the first
		// answer's end after it: the request started at 150 answered at 900,
		// before the one started at 200 answered (205 + ... = 950).
		{"outage ends at the first answer", []Sample{
			s(0, 5, true, "a v1"), s(100, 2000, false, ""), s(150, 750, true, "b v1"), s(200, 750, true, "b v1")},
			Outcome{Total: 4, Failed: 1, Outage: ms(800), Answered: map[string]int{"a": 1, "b": 2}}},
		{"longest of two", []Sample{
			s(0, 5, false, ""), s(50, 5, true, "a v1"), s(100, 5, false, ""), s(150, 5, false, ""), s(200, 5, true, "a v1")},
			Outcome{Total: 5, Failed: 3, Outage: ms(105), Answered: map[string]int{"a": 2}}},
		// A sub-second outage: nothing failed, but the requests sent into
		// it were answered only after their SYN was retransmitted (≥ 1 s).
		{"hit without failures", []Sample{
			s(0, 5, true, "a v1"), s(50, 1030, true, "b v1"), s(100, 1010, true, "b v1"), s(150, 950, true, "b v1"), s(900, 5, true, "b v1")},
			Outcome{Total: 5, Slow: 2, Outage: ms(855), Answered: map[string]int{"a": 1, "b": 4}}},
		{"not recovered", []Sample{s(0, 5, true, "a v1"), s(50, 2000, false, "")},
			Outcome{Total: 2, Failed: 1, Outage: -1, Answered: map[string]int{"a": 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Analyze(tc.samples)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

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

// TestHealthyFor: answers from before since do not count; a request still
// hanging (here: on a handler that blocks until released) keeps the loop
// unhealthy even when later requests succeed; and so does one hanging
// after the last answers (a power-off taking effect after since).
func TestHealthyFor(t *testing.T) {
	var hangOne, hangAll atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hangOne.CompareAndSwap(true, false) || hangAll.Load() {
			<-release
		}
		w.Write([]byte("node-a v1\n"))
	}))
	defer srv.Close()
	l := GetLoop(srv.URL, 5*time.Millisecond, 60*time.Second)
	defer l.Stop()
	defer close(release)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not after 20s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	answeredSince := func(since time.Time, n int) func() bool {
		return func() bool {
			k := 0
			for _, s := range l.Samples() {
				if s.At.After(since) && s.OK {
					k++
				}
			}
			return k >= n
		}
	}
	waitFor("10 answers", func() bool { return len(l.Samples()) >= 10 })
	since := time.Now()
	if err := l.HealthyFor(5, since); err == nil {
		t.Error("HealthyFor counted answers to requests sent before since")
	}
	hangOne.Store(true)
	waitFor("the hanging request", func() bool { return !hangOne.Load() })
	waitFor("5 answers after the hanging request", answeredSince(since, 5))
	if err := l.HealthyFor(3, since); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Errorf("HealthyFor with a request hanging: %v, want an in-flight error", err)
	}
	release <- struct{}{}
	waitFor("healthy once the hanging request finished", func() bool { return l.HealthyFor(3, since) == nil })
	hangAll.Store(true)
	waitFor("a request in flight for hangAfter", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, t0 := range l.inflight {
			if time.Since(t0) >= hangAfter {
				return true
			}
		}
		return false
	})
	// Before the client's 2 s timeout fails the hanging requests, only
	// their age tells.
	if err := l.HealthyFor(3, since); err == nil {
		t.Error("HealthyFor with requests hanging after the last answers: nil, want an error")
	}
	hangAll.Store(false)
}
