package pull

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/report"
)

func TestRingKeepsWholeLinesUpToTheBound(t *testing.T) {
	t.Parallel()
	r := NewRing()
	line := strings.Repeat("x", 99) + "\n"
	for i := 0; i < 2*report.LogTailBytes/len(line); i++ {
		fmt.Fprintf(r, "%05d%s", i, line[5:])
	}
	b, _ := r.snapshot()
	if len(b) > report.LogTailBytes {
		t.Fatalf("ring holds %d bytes, bound %d", len(b), report.LogTailBytes)
	}
	if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n"))*len(line) != len(b) {
		t.Fatalf("ring does not hold whole lines: %q…", b[:40])
	}
	last := fmt.Sprintf("%05d", 2*report.LogTailBytes/len(line)-1)
	if !bytes.Contains(b, []byte(last)) {
		t.Errorf("the newest line %s is missing", last)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, secret, want string }{
		// Token-shaped values are built here, so no key-like literal is committed.
		{"token dop_v1_" + strings.Repeat("0a", 16) + " used", "", `token [redacted] used`},
		{`Authorization: Bearer abcdefgh12345678`, "", `Authorization: Bearer [redacted]`},
		{`{"secret_access_key":"placeholder-value"}`, "", `{"secret_access_key":"[redacted]"}`},
		{`password=hunter22 next`, "", `password=[redacted] next`},
		{`the key s3cr3t-v4lue leaked`, "s3cr3t-v4lue", `the key [redacted] leaked`},
		{`nothing here`, "", `nothing here`},
	} {
		got := string(Redact([]byte(tc.in), []string{tc.secret}))
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestShipperUploadsRedactedTails: every source with lines is uploaded with
// a header, the node's secrets redacted, a file's tail bounded; an
// unchanged tail is not uploaded again, and an object is not rewritten
// within logMinGap.
func TestShipperUploadsRedactedTails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newMemStore()
	d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: dir, PollInterval: time.Second}, store, Options{})
	ring := NewRing()
	fmt.Fprintln(ring, `{"msg":"started","token":"node-secret-token-1"}`)
	haproxyLog := filepath.Join(dir, "haproxy.log")
	big := strings.Repeat("[NOTICE] haproxy line\n", 2*report.LogTailBytes/22)
	if err := os.WriteFile(haproxyLog, []byte(big+"last line with node-secret-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &shipper{d: d, sources: logSources(ring, dir, filepath.Join(dir, "missing-cloud-init.log")),
		last: map[string]string{}, at: map[string]time.Time{},
		secrets: func() []string { return []string{"node-secret-token-1"} }}
	s.ship(context.Background(), shipAll)

	for _, c := range []string{report.LogPull, report.LogHAProxy} {
		obj, err := store.Get(context.Background(), report.LogKey("shop", "amber-fox", c), "")
		if err != nil {
			t.Fatalf("%s tail not uploaded: %v", c, err)
		}
		up, body := report.ParseLogTail(obj.Body)
		if time.Since(up) > time.Minute {
			t.Errorf("%s: header upload time %v", c, up)
		}
		if bytes.Contains(obj.Body, []byte("node-secret-token-1")) {
			t.Errorf("%s tail contains the secret", c)
		}
		if len(body) > report.LogTailBytes {
			t.Errorf("%s tail is %d bytes, bound %d", c, len(body), report.LogTailBytes)
		}
	}
	if _, err := store.Get(context.Background(), report.LogKey("shop", "amber-fox", report.LogCloudInit), ""); err == nil {
		t.Error("a missing file was uploaded")
	}
	puts := store.puts()
	s.ship(context.Background(), shipChanged)
	if store.puts() != puts {
		t.Error("unchanged tails were uploaded again")
	}
	fmt.Fprintln(ring, "a new line")
	s.ship(context.Background(), shipChanged)
	if store.puts() != puts {
		t.Error("a tail was rewritten within logMinGap")
	}
	s.at[report.LogPull] = time.Now().Add(-2 * logMinGap)
	s.ship(context.Background(), shipChanged)
	if store.puts() != puts+1 {
		t.Errorf("%d uploads after the gap, want exactly the changed pull tail", store.puts()-puts)
	}
}

// TestShipperRetriesPendingComponents is the reproduction of a node whose
// first upload ran before dynia-pull's first line reached the ring: the
// pull tail must reach the bucket on a later check, not ten minutes later,
// and a component already uploaded is not written again by that check.
func TestShipperRetriesPendingComponents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newMemStore()
	d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: dir, PollInterval: time.Second}, store, Options{})
	ring := NewRing()
	if err := os.WriteFile(filepath.Join(dir, "haproxy.log"), []byte("[NOTICE] up\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &shipper{d: d, sources: logSources(ring, dir, ""),
		last: map[string]string{}, at: map[string]time.Time{}}
	s.ship(context.Background(), shipAll)
	if _, err := store.Get(context.Background(), report.LogKey("shop", "amber-fox", report.LogPull), ""); err == nil {
		t.Fatal("an empty ring was uploaded")
	}
	puts := store.puts()
	fmt.Fprintln(ring, `{"msg":"dynia-pull running"}`)
	fmt.Fprintln(ring, `{"msg":"started"}`) // changed since, but not pending
	s.ship(context.Background(), shipPending)
	if store.puts() != puts+1 {
		t.Fatalf("%d uploads on the check, want the pull tail only", store.puts()-puts)
	}
	obj, err := store.Get(context.Background(), report.LogKey("shop", "amber-fox", report.LogPull), "")
	if err != nil || !bytes.Contains(obj.Body, []byte("dynia-pull running")) {
		t.Fatalf("pull tail after the check: %v\n%s", err, obj.Body)
	}
	s.ship(context.Background(), shipPending)
	if store.puts() != puts+1 {
		t.Error("a component already uploaded was uploaded again as pending")
	}
}

// puts counts the writes the store took.
func (m *memStore) puts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// TestNodeSecretsCoverEveryKey: what log tails are redacted of includes the
// node token, the cluster key (without its age comment lines) and the
// report key: every node can read the uploaded tails.
func TestNodeSecretsCoverEveryKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Placeholders of no real format: what counts is that each file's
	// secret line is picked up and its comment lines are not.
	token, clusterKey, reportKey := "node-token-placeholder", "cluster-key-placeholder", "report-key-placeholder"
	cfg := &nodeconfig.Config{
		DOTokenFile:    write("token", token+"\n"),
		ClusterKeyFile: write("cluster.key", "# created: 2026-11-30\n# public key: placeholder\n"+clusterKey+"\n"),
		ReportKeyFile:  write("report.key", reportKey+"\n"),
	}
	got := strings.Join(nodeSecrets(cfg), "|")
	for _, want := range []string{token, clusterKey, reportKey} {
		if !strings.Contains(got, want) {
			t.Errorf("nodeSecrets = %q: lacks %q", got, want)
		}
	}
	if strings.Contains(got, "#") {
		t.Errorf("nodeSecrets = %q: comment lines are not secrets (and would redact ordinary text)", got)
	}
}
