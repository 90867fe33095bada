package testutil

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestStartDockerd(t *testing.T) {
	var d *Dockerd
	var pid, ctdPID int
	t.Run("serve", func(t *testing.T) {
		d = StartDockerd(t, "")
		pid, ctdPID = d.PID(), d.ContainerdPID()
		if err := d.ping(); err != nil {
			t.Fatalf("ping: %v", err)
		}
		// dockerd runs in the test's namespace, not the root one.
		self, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := os.Readlink("/proc/" + itoa(pid) + "/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if self == theirs {
			t.Errorf("dockerd (pid %d) runs in the root network namespace %s", pid, self)
		}
		// Its FORWARD DROP policy lands in that namespace.
		out, err := exec.Command("ip", "netns", "exec", d.NetNS, "iptables", "-S", "FORWARD").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "-P FORWARD DROP") {
			t.Errorf("iptables -S FORWARD in %s: %v %s, want the DROP policy dockerd sets", d.NetNS, err, out)
		}
	})
	if d == nil || pid == 0 {
		return // skipped
	}
	for _, p := range []int{pid, ctdPID} {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after cleanup (kill 0: %v)", p, err)
		}
	}
	if _, err := os.Stat("/run/netns/" + d.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s left after cleanup (%v)", d.NetNS, err)
	}
	if _, err := os.Stat(d.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after cleanup (%v)", d.Dir, err)
	}
}

func TestStartRegistry(t *testing.T) {
	r := StartRegistry(t, "127.0.0.1", WithHtpasswd("dynia", "s3cret-pass"))
	get := func(user, pass string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+r.Addr+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		user, pass string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"dynia", "wrong", http.StatusUnauthorized},
		{"dynia", "s3cret-pass", http.StatusOK},
	} {
		if got := get(c.user, c.pass); got != c.want {
			t.Errorf("GET /v2/ as %q/%q: %d, want %d", c.user, c.pass, got, c.want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
