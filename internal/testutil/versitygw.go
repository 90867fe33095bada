package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// S3Server is a running versitygw (a real S3 gateway on a posix directory)
// with one empty bucket, started by StartVersityGW.
type S3Server struct {
	Endpoint        string // http://127.0.0.1:PORT
	Region          string // the region requests must be signed for
	Bucket          string // an empty bucket created for the test
	AccessKeyID     string
	SecretAccessKey string
	Dir             string // the posix root; the bucket is Dir/Bucket
	// IAMDir, when set (StartVersityGWIAM), holds versitygw's internal IAM
	// (users.json): accounts besides root can be made with its admin API,
	// served on the S3 port.
	IAMDir string
	PID    int
}

// URL names a store prefix in the test bucket: "s3://<bucket>/<prefix>".
func (s *S3Server) URL(prefix string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return "s3://" + s.Bucket
	}
	return "s3://" + s.Bucket + "/" + prefix
}

// MakeBucket creates another (empty) bucket. In versitygw's posix backend a
// bucket is a directory under the root, owned by the root account.
func (s *S3Server) MakeBucket(name string) error {
	return os.Mkdir(filepath.Join(s.Dir, name), 0o700)
}

// VersityGWCommand builds the command that serves dataDir over S3 on addr
// with root credentials key/secret. The credentials go through the
// environment, not argv, so they do not show in ps. The caller starts it.
func VersityGWCommand(bin, addr, dataDir, key, secret string) *exec.Cmd {
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", dataDir)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+key,
		"ROOT_SECRET_ACCESS_KEY="+secret,
	)
	return cmd
}

// StartVersityGW starts versitygw on a free loopback port with a fresh
// directory and bucket, waits until it accepts connections, and kills it (by
// PID) when the test ends. It skips (or fails under
// DYNIA_REQUIRE_INTEGRATION=1) when versitygw is not installed.
func StartVersityGW(t testing.TB) *S3Server {
	t.Helper()
	return startVersityGW(t, false)
}

// StartVersityGWIAM is StartVersityGW with versitygw's internal IAM on (a
// directory of its own, S3Server.IAMDir): the admin API can create
// accounts limited by bucket policies, as the sandbox does for Spaces keys.
func StartVersityGWIAM(t testing.TB) *S3Server {
	t.Helper()
	return startVersityGW(t, true)
}

func startVersityGW(t testing.TB, iam bool) *S3Server {
	t.Helper()
	bin := NeedBinary(t, "versitygw")
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv := &S3Server{
		Region:          "us-east-1",
		Bucket:          "dynia-test",
		AccessKeyID:     "DYNIATEST" + strings.ToUpper(randHex(6)),
		SecretAccessKey: randHex(20),
		Dir:             dataDir,
	}
	if err := srv.MakeBucket(srv.Bucket); err != nil {
		t.Fatal(err)
	}
	if iam {
		srv.IAMDir = filepath.Join(root, "iam")
		if err := os.Mkdir(srv.IAMDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	// A free port can be taken between our probe and versitygw's bind; try
	// a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeLoopbackAddr()
		if err != nil {
			t.Fatalf("versitygw: find a free port: %v", err)
		}
		logPath := filepath.Join(root, fmt.Sprintf("versitygw-%d.log", attempt))
		pid, err := startVersity(t, bin, addr, srv, logPath)
		if err == nil {
			srv.Endpoint = "http://" + addr
			srv.PID = pid
			return srv
		}
		lastErr = err
	}
	t.Fatalf("versitygw did not start: %v", lastErr)
	return nil
}

// startVersity starts one versitygw and waits for it to listen. On success
// the process is registered for cleanup.
func startVersity(t testing.TB, bin, addr string, srv *S3Server, logPath string) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := VersityGWCommand(bin, addr, srv.Dir, srv.AccessKeyID, srv.SecretAccessKey)
	if srv.IAMDir != "" {
		// A global option: before the backend's name.
		cmd.Args = append(append(cmd.Args[:1:1], "--iam-dir", srv.IAMDir), cmd.Args[1:]...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startChild(cmd)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}

	var dialer net.Dialer
	err = waitStarted(proc.exited, 15*time.Second, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close() // only probing that it listens
	})
	if errors.Is(err, errExited) {
		out, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("versitygw exited (%v): %s", proc.err, tail(out))
	}
	if err != nil {
		proc.kill()
		out, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("versitygw not listening on %s after 15s: %s", addr, tail(out))
	}
	t.Cleanup(func() {
		proc.kill()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil && len(out) > 0 {
				t.Logf("versitygw log (%s):\n%s", logPath, tail(out))
			}
		}
	})
	return cmd.Process.Pid, nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }() // only borrowing a free port number
	return l.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tail keeps the last lines of a log for an error message.
func tail(out []byte) string {
	out = bytes.TrimSpace(out)
	lines := bytes.Split(out, []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
