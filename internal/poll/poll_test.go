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
