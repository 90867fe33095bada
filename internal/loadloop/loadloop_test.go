package loadloop

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/testutil"
)

func TestAnalyze(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(at, took int, ok bool, body string) Sample { return Sample{t0.Add(ms(at)), ms(took), ok, body} }
	subSecond := []Sample{s(0, 5, true, "a v1"), s(50, 1030, true, "b v1"), s(100, 1010, true, "b v1"), s(150, 950, true, "b v1"), s(900, 5, true, "b v1")}
	for _, tc := range []struct {
		name    string
		samples []Sample
		slow    time.Duration
		want    Outcome
	}{
		{"all good", []Sample{s(0, 5, true, "a v1"), s(50, 5, true, "b v1")}, time.Second,
			Outcome{Total: 2, Answered: map[string]int{"a": 1, "b": 1}}},
		// The outage runs from the first failure's start (100) to the first
		// answer's end after it: the request started at 150 answered at 900,
		// before the one started at 200 answered (205 + ... = 950).
		{"outage ends at the first answer", []Sample{
			s(0, 5, true, "a v1"), s(100, 2000, false, "timeout"), s(150, 750, true, "b v1"), s(200, 750, true, "b v1")}, time.Second,
			Outcome{Total: 4, Failed: 1, Outage: ms(800), Answered: map[string]int{"a": 1, "b": 2}}},
		{"longest of two", []Sample{
			s(0, 5, false, ""), s(50, 5, true, "a v1"), s(100, 5, false, ""), s(150, 5, false, ""), s(200, 5, true, "a v1")}, time.Second,
			Outcome{Total: 5, Failed: 3, Outage: ms(105), Answered: map[string]int{"a": 2}}},
		// A sub-second outage: nothing failed, but the requests sent into
		// it were answered only after their SYN was retransmitted (≥ 1 s).
		{"hit without failures", subSecond, time.Second,
			Outcome{Total: 5, Slow: 2, Outage: ms(855), Answered: map[string]int{"a": 1, "b": 4}}},
		{"slow answers are not hit without slow", subSecond, 0,
			Outcome{Total: 5, Answered: map[string]int{"a": 1, "b": 4}}},
		{"failures are hit without slow", []Sample{
			s(0, 5, true, "a v1"), s(100, 2000, false, ""), s(150, 1500, true, "b v1"), s(200, 750, true, "b v1")}, 0,
			Outcome{Total: 4, Failed: 1, Outage: ms(850), Answered: map[string]int{"a": 1, "b": 2}}},
		{"not recovered", []Sample{s(0, 5, true, "a v1"), s(50, 2000, false, "")}, time.Second,
			Outcome{Total: 2, Failed: 1, Outage: -1, Answered: map[string]int{"a": 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Analyze(tc.samples, tc.slow)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// get is a loop's request: a GET of url on a new connection, its body.
func get(url string) func(context.Context) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return func(context.Context) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return strings.TrimSpace(string(b)), err
	}
}

// TestLoop: every request is sampled, a failure keeps its error's text,
// and Stop waits for the requests in flight.
func TestLoop(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := n.Add(1); k == 4 {
			w.WriteHeader(http.StatusBadGateway)
		} else {
			fmt.Fprintf(w, "node-a request-%d\n", k)
		}
	}))
	defer srv.Close()
	l := Start(get(srv.URL), 5*time.Millisecond, time.Minute)
	waitFor(t, "10 samples", func() bool { return len(l.Samples()) >= 10 })
	samples := l.Stop()
	if int64(len(samples)) != n.Load() {
		t.Errorf("%d samples of %d requests after Stop", len(samples), n.Load())
	}
	var failed []string
	for _, s := range samples {
		if !s.OK {
			failed = append(failed, s.Body)
		}
	}
	if diff := cmp.Diff([]string{"status 502"}, failed); diff != "" {
		t.Errorf("failed samples' bodies (-want +got):\n%s", diff)
	}
	if o := Analyze(samples, 0); o.Answered["node-a"] != len(samples)-1 {
		t.Errorf("answered %v, want node-a %d times", o.Answered, len(samples)-1)
	}
}

// waitFor waits for cond (20 s at the most).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("not yet: %s", what)
		}
		return nil
	})
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
	l := Start(get(srv.URL), 5*time.Millisecond, 60*time.Second)
	defer l.Stop()
	defer close(release)
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
	waitFor(t, "10 answers", func() bool { return len(l.Samples()) >= 10 })
	since := time.Now()
	if err := l.HealthyFor(5, since); err == nil {
		t.Error("HealthyFor counted answers to requests sent before since")
	}
	hangOne.Store(true)
	waitFor(t, "the hanging request", func() bool { return !hangOne.Load() })
	waitFor(t, "5 answers after the hanging request", answeredSince(since, 5))
	if err := l.HealthyFor(3, since); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Errorf("HealthyFor with a request hanging: %v, want an in-flight error", err)
	}
	release <- struct{}{}
	waitFor(t, "healthy once the hanging request finished", func() bool { return l.HealthyFor(3, since) == nil })
	hangAll.Store(true)
	waitFor(t, "a request in flight for hangAfter", func() bool {
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
