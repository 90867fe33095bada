package poll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	errNotYet := errors.New("not yet")
	for _, tc := range []struct {
		name      string
		holdAfter int // calls before cond holds; 0: never
		timeout   time.Duration
		wantErr   error
		wantCalls int // 0: any number
	}{
		{"holds at once", 1, time.Hour, nil, 1},
		{"holds on the fourth call", 4, time.Hour, nil, 4},
		{"never holds: the last error", 0, 50 * time.Millisecond, errNotYet, 0},
		{"called once even when already late", 0, 0, errNotYet, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := Within(tc.timeout, func() error {
				calls++
				if tc.holdAfter > 0 && calls >= tc.holdAfter {
					return nil
				}
				return fmt.Errorf("call %d: %w", calls, errNotYet)
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Within: %v, want %v", err, tc.wantErr)
			}
			if tc.wantCalls != 0 && calls != tc.wantCalls {
				t.Errorf("cond called %d times, want %d", calls, tc.wantCalls)
			}
			if err != nil && err.Error() != fmt.Sprintf("call %d: not yet", calls) {
				t.Errorf("Within returned %q, want the last call's error (call %d)", err, calls)
			}
		})
	}
}

// TestUntilCancel: a cancelled context ends the wait with cond's last error.
func TestUntilCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Until(ctx, func() error {
		calls++
		if calls == 3 {
			cancel()
		}
		return fmt.Errorf("call %d", calls)
	})
	if err == nil || err.Error() != "call 3" {
		t.Errorf("Until after cancel: %v, want call 3's error", err)
	}
}

// TestUntilStop: a Stop error ends the wait at once, however long is left,
// with the error Stop was given.
func TestUntilStop(t *testing.T) {
	errGone := errors.New("serve exited")
	calls := 0
	err := Within(time.Hour, func() error {
		calls++
		if calls == 2 {
			return Stop(fmt.Errorf("wait: %w", errGone))
		}
		return errors.New("not yet")
	})
	if calls != 2 || !errors.Is(err, errGone) || err.Error() != "wait: serve exited" {
		t.Errorf("Until after Stop: %v after %d calls, want %q after 2", err, calls, "wait: serve exited")
	}
}

func TestBackoff(t *testing.T) {
	s, m := time.Second, time.Minute
	for _, tc := range []struct {
		first, max time.Duration
		n          int
		want       time.Duration
	}{
		{s, m, 0, s},
		{s, m, 1, s},
		{s, m, 2, 2 * s},
		{s, m, 6, 32 * s},
		{s, m, 7, m},
		{s, m, 1000, m}, // capped: no overflow
		{m, s, 3, s},    // first above max: max
	} {
		if got := Backoff(tc.first, tc.max, tc.n); got != tc.want {
			t.Errorf("Backoff(%v, %v, %d) = %v, want %v", tc.first, tc.max, tc.n, got, tc.want)
		}
	}
}

func TestGetOK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dir" {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "{}")
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := GetOK(ctx, srv.Client(), srv.URL+"/dir"); err != nil {
		t.Errorf("GetOK of a 200: %v", err)
	}
	want := "GET " + srv.URL + "/other: 503 Service Unavailable"
	if err := GetOK(ctx, srv.Client(), srv.URL+"/other"); err == nil || err.Error() != want {
		t.Errorf("GetOK of a 503: %v, want %q", err, want)
	}
	srv.Close()
	if err := GetOK(ctx, srv.Client(), srv.URL+"/dir"); err == nil {
		t.Error("GetOK of a closed server: nil, want an error")
	}
}

// TestUntilBackoffStop: UntilBackoff keeps Until's contract (a Stop error
// ends the wait at once) on its own schedule.
func TestUntilBackoffStop(t *testing.T) {
	calls := 0
	err := UntilBackoff(context.Background(), time.Millisecond, 2*time.Millisecond, func() error {
		calls++
		if calls == 5 {
			return Stop(errors.New("gone"))
		}
		return errors.New("not yet")
	})
	if calls != 5 || err == nil || err.Error() != "gone" {
		t.Errorf("UntilBackoff: %v after %d calls, want gone after 5", err, calls)
	}
}

// TestSleepCancel: Sleep on a done context returns its error, not after d.
func TestSleepCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(cancelled, 1h) = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v, want nil", err)
	}
}
