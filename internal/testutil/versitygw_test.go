package testutil

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

func TestStartVersityGW(t *testing.T) {
	var pid int
	t.Run("serve", func(t *testing.T) {
		srv := StartVersityGW(t)
		pid = srv.PID
		if got, want := srv.URL("/clusters/"), "s3://"+srv.Bucket+"/clusters"; got != want {
			t.Errorf("URL = %q, want %q", got, want)
		}
		// An unsigned request must be refused by a real S3 gateway.
		resp, err := http.Get(srv.Endpoint + "/" + srv.Bucket + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Error>") {
			t.Errorf("unsigned GET: %d %s, want 403 with an S3 error", resp.StatusCode, body)
		}
	})
	if pid == 0 {
		return // skipped
	}
	// Cleanup must have killed and reaped it.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("versitygw pid %d still exists after cleanup (kill 0: %v)", pid, err)
	}
}
