package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Secrets stay put (docs/credentials.md): every e2e test checks, before its
// sandbox goes down, that no secret the run used shows where it must not.
//
// The secrets: the DO token and the node token, the operator's Spaces
// secret, every Spaces key minted for nodes (versitygw's accounts), cluster
// and state keys, every 0600 credential file on every droplet (Spaces key,
// DO token, cluster key, report key, WireGuard private key, TLS private
// keys; any non-PEM *.key file) and in the CLI's
// and the sandbox's config directories. They are collected after every
// command, so the keys of a droplet or cluster deleted since still count.
// A test that uses a secret of its own (a registry password, a secret env
// value) registers it with e.secrets.add.
//
// Where they must not be: every command's stdout and stderr (except `sandbox
// status -o json`, whose purpose is to hand the sandbox's throwaway keys to
// scripts); every log of the sandbox and its droplets; every object in the
// bucket (state, reports, node logs, certificates: sealed values are not
// secrets); every file of the run that its group or others may read; the
// command line of every process the sandbox started (/proc/PID/cmdline is
// world-readable). Files holding a secret legitimately are exempt only while
// they are 0600 (or stricter). A hit fails the test, naming the secret's
// kind and where, never the secret.
type secretWatch struct {
	mu      sync.Mutex
	secrets map[string]string // value → what it is
	outputs []capture
}

type capture struct {
	what string
	text string
}

// minSecret: shorter strings would match by chance; every real secret is
// longer (tokens 64+ characters, keys 40+).
const minSecret = 16

func (w *secretWatch) add(value, what string) {
	value = strings.TrimSpace(value)
	if len(value) < minSecret {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.secrets == nil {
		w.secrets = map[string]string{}
	}
	if _, ok := w.secrets[value]; !ok {
		w.secrets[value] = what
	}
}

// output records one command's output to be checked.
func (w *secretWatch) output(args []string, r result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	what := "output of `dynia " + strings.Join(args, " ") + "`"
	stdout := r.stdout
	if len(args) >= 2 && args[0] == "sandbox" && args[1] == "status" && slicesContain(args, "json") {
		stdout = "" // its purpose: the sandbox's keys for scripts
	}
	w.outputs = append(w.outputs, capture{what, stdout + "\n" + r.stderr})
}

func slicesContain(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// credentialNames are the 0600 files whose whole (trimmed) content is a
// secret: DO tokens, age identities, WireGuard keys.
var credentialNames = map[string]bool{"do-token": true, "cluster.key": true, "wireguard.key": true,
	"token": true, "node-token": true, "cloudflare-token": true}

// collect reads the secrets the run holds now under root (the test's
// directory: config, cluster keys, the sandbox).
func (w *secretWatch) collect(root, sandboxDir string) {
	var status map[string]any
	if b, err := os.ReadFile(filepath.Join(sandboxDir, "status.json")); err == nil && json.Unmarshal(b, &status) == nil {
		for k, what := range map[string]string{"token": "the DO token", "node_token": "the node token",
			"secret_access_key": "the operator's Spaces secret", "cloudflare_token": "the Cloudflare token"} {
			if v, ok := status[k].(string); ok {
				w.add(v, what)
			}
		}
	}
	var users struct {
		Accounts map[string]struct {
			Secret string `json:"secret"`
		} `json:"accessAccounts"`
	}
	if b, err := os.ReadFile(filepath.Join(sandboxDir, "s3iam", "users.json")); err == nil && json.Unmarshal(b, &users) == nil {
		for id, a := range users.Accounts {
			w.add(a.Secret, "the secret of Spaces key "+id)
		}
	}
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			// Bucket objects and Docker's data hold no credential files.
			if path == filepath.Join(sandboxDir, "s3") || d.Name() == "docker" || d.Name() == "registry" {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o077 != 0 || info.Size() > 64<<10 {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		switch {
		case credentialNames[d.Name()] || (strings.HasSuffix(d.Name(), ".key") && !bytes.Contains(b, []byte("PRIVATE KEY"))):
			w.add(string(b), "the credential in "+rel)
		case strings.HasSuffix(d.Name(), ".json"):
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				for _, k := range []string{"secret_access_key", "password", "identitytoken", "identity_token"} {
					if v, ok := m[k].(string); ok {
						w.add(v, k+" in "+rel)
					}
				}
			}
		}
		// A PEM private key (a TLS key, whatever the file's name): its
		// first line of base64 is unique to it.
		if i := bytes.Index(b, []byte("PRIVATE KEY-----\n")); i >= 0 {
			body := b[i+len("PRIVATE KEY-----\n"):]
			if line, _, _ := bytes.Cut(body, []byte("\n")); len(line) >= minSecret {
				w.add(string(line), "the private key in "+rel)
			}
		}
		return nil
	})
}

// check reports every secret found where it must not be.
func (w *secretWatch) check(t testing.TB, root, sandboxDir string, namespaces []string) {
	t.Helper()
	w.collect(root, sandboxDir)
	w.mu.Lock()
	secrets := make(map[string]string, len(w.secrets))
	for k, v := range w.secrets {
		secrets[k] = v
	}
	outputs := append([]capture(nil), w.outputs...)
	w.mu.Unlock()
	if len(secrets) == 0 {
		t.Error("secret check: no secrets collected (the sandbox's status.json unread?): it would check nothing")
		return
	}
	hits := map[string]bool{}
	look := func(where string, b []byte) {
		for s, what := range secrets {
			if bytes.Contains(b, []byte(s)) {
				hits[what+" in "+where] = true
			}
		}
	}
	for _, c := range outputs {
		look(c.what, []byte(c.text))
	}
	scanned, exempt := 0, 0
	rootDev := devOf(root)
	s3dir := filepath.Join(sandboxDir, "s3")
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if d.IsDir() {
			// Another file system under the run's directory: a container's
			// root or a mount of Docker's, not files the run wrote.
			if devOf(path) != rootDev {
				return filepath.SkipDir
			}
			return nil
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		isLog := strings.Contains(string(filepath.Separator)+rel, string(filepath.Separator)+"logs"+string(filepath.Separator)) || strings.HasSuffix(path, ".log")
		isObject := strings.HasPrefix(path, s3dir+string(filepath.Separator))
		if !isLog && !isObject && info.Mode().Perm()&0o077 == 0 {
			exempt++
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		scanned++
		kind := "the group/world-readable file "
		switch {
		case isObject:
			kind = "the bucket object "
		case isLog:
			kind = "the log "
		}
		look(kind+rel, b)
		return nil
	})
	procs := 0
	for _, pid := range sandboxPIDs(sandboxDir, namespaces) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // gone meanwhile
		}
		procs++
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		look(fmt.Sprintf("the command line of pid %d (%s)", pid, strings.TrimSpace(string(comm))), b)
	}
	t.Logf("secret check: %d secrets, %d outputs, %d files scanned (%d 0600 files exempt), %d processes", len(secrets), len(outputs), scanned, exempt, procs)
	if procs == 0 {
		t.Error("secret check: no sandbox process found to check (pid files moved?)")
	}
	var list []string
	for h := range hits {
		list = append(list, h)
	}
	sort.Strings(list)
	for _, h := range list {
		t.Errorf("secret leaked: %s", h)
	}
}

func devOf(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Dev
}

// sandboxPIDs is every process the sandbox started: its pid files (serve,
// versitygw, registry, each droplet's daemons and dynia-pull's) and every
// process in its network namespaces.
func sandboxPIDs(sandboxDir string, namespaces []string) []int {
	seen := map[int]bool{}
	var files []string
	for _, g := range []string{"run/*.pid", "droplets/*/pids/*.pid", "droplets/*/run/*.pid"} {
		m, _ := filepath.Glob(filepath.Join(sandboxDir, g))
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.Fields(string(b) + " x")[0]); err == nil && pid > 0 {
			seen[pid] = true
		}
	}
	for _, ns := range namespaces {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				seen[pid] = true
			}
		}
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}
