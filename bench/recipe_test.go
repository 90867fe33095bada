package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/testutil"
)

// TestRecipeFiles: the recipe's files keep the tutorial's shape (priority
// 200 MASTER / 100 BACKUP, virtual_router_id 33, unicast peers, no
// virtual_ipaddress and no advert_int, notify_master; the 10 × 3 s assign
// loop without a wait for the action) and keep the token out of argv.
func TestRecipeFiles(t *testing.T) {
	dir := t.TempDir()
	for _, primary := range []bool{true, false} {
		files, err := recipeFiles(primary, "10.10.0.2", "10.10.0.3", dir, "198.51.100.9", "http://198.51.100.1")
		if err != nil {
			t.Fatal(err)
		}
		ka := files["keepalived.conf"]
		want := []string{"state BACKUP", "priority 100"}
		if primary {
			want = []string{"state MASTER", "priority 200"}
		}
		want = append(want, "virtual_router_id 33", "unicast_src_ip 10.10.0.2", "unicast_peer {\n        10.10.0.3\n    }",
			"auth_type PASS", "chk_haproxy", "interval 2", "notify_master "+filepath.Join(dir, "master.sh"))
		for _, w := range want {
			if !strings.Contains(ka, w) {
				t.Errorf("keepalived.conf (primary %v) lacks %q:\n%s", primary, w, ka)
			}
		}
		for _, no := range []string{"virtual_ipaddress", "advert_int", "nopreempt"} {
			if strings.Contains(ka, no) {
				t.Errorf("keepalived.conf has %q, which the tutorial's has not", no)
			}
		}
		sh := files["master.sh"]
		for _, w := range []string{"reserved_ip/ipv4/active", `while [ $n -lt 10 ]`, "sleep 3", "&& break",
			`"type\":\"assign\"`, "-H @" + filepath.Join(dir, "token.header"), "/v2/reserved_ips/$IP/actions"} {
			if !strings.Contains(sh, w) {
				t.Errorf("master.sh lacks %q:\n%s", w, sh)
			}
		}
		if strings.Contains(sh, "Bearer") {
			t.Error("master.sh carries the token itself (it must come from the 0600 header file)")
		}
	}
}

// TestRecipeFilesCheck: the recipe's configs pass the real `keepalived -t`
// and `haproxy -c`.
func TestRecipeFilesCheck(t *testing.T) {
	keepalived, haproxy := testutil.NeedBinary(t, "keepalived"), testutil.NeedBinary(t, "haproxy")
	for _, primary := range []bool{true, false} {
		dir := t.TempDir()
		files, err := recipeFiles(primary, "10.10.0.2", "10.10.0.3", dir, "198.51.100.9", "http://198.51.100.1")
		if err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command(keepalived, "-t", "-f", filepath.Join(dir, "keepalived.conf")).CombinedOutput(); err != nil {
			t.Errorf("keepalived -t: %v\n%s", err, out)
		}
		if out, err := exec.Command(haproxy, "-c", "-f", filepath.Join(dir, "haproxy.cfg")).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	}
}
