// Package demoapp is the sandbox's built-in app: a tiny HTTP server that
// answers with its node id, so requests through a Reserved IP show which
// node served them. `dynia sandbox demo-app` runs it in each droplet.
package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Handler answers "<node id>\n" on / (JSON with ?json) and 200 on /healthz.
// With DEMO_APP_VERSION set (a release's env), it answers "<node id>
// <version>\n", like the demo images; DEMO_APP_MODE=broken makes /healthz
// answer 500.
func Handler(nodeID string) http.Handler {
	host, _ := os.Hostname()
	if v := os.Getenv("DEMO_APP_VERSION"); v != "" {
		nodeID += " " + v
	}
	broken := os.Getenv("DEMO_APP_MODE") == "broken"
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if broken {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintln(w, "broken")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if _, ok := r.URL.Query()["json"]; ok {
			w.Header().Set("Content-Type", "application/json")
			// An encode error means the client went away; no one to tell.
			_ = json.NewEncoder(w).Encode(map[string]string{
				"node_id": nodeID, "hostname": host, "path": r.URL.Path, "remote_addr": r.RemoteAddr,
			})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, nodeID)
	})
	return mux
}

// Run serves Handler(nodeID) on addr until ctx is done.
func Run(ctx context.Context, addr, nodeID string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo app: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Handler(nodeID), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("demo app: %w", err)
	}
}
