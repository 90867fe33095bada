package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Parallel()
	api, md := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"DOSIM_TOKEN": "secret"}
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-api", api, "-metadata", md}, &stderr, func(k string) string { return env[k] })
	}()
	var resp *http.Response
	var err error
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequest("GET", "http://"+api+"/v2/account", nil)
		req.Header.Set("Authorization", "Bearer secret")
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("account: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if bytes.Contains(stderr.Bytes(), []byte("secret")) {
		t.Fatal("token logged")
	}
}
