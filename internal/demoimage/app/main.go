// Command app is dynia's demo app, the program internal/demoimage bakes into
// the demo images (demo-app:v1, v2, broken). It is built on its own, outside
// the dynia module, from this file alone, so it uses the standard library
// only.
//
// It answers "<node id> <version>\n" on / and 200 "ok" on /healthz, so a
// request through a node's HAProxy shows which node and which release served
// it. Environment:
//
//	DYNIA_NODE_ID     node id (from the runtime's container spec)
//	DEMO_APP_VERSION  version (baked into the image config)
//	DEMO_APP_ADDR     listen address, default ":8080"
//	DEMO_APP_MODE     ""        healthy
//	                  "broken"  /healthz answers 500, forever
//	                  "exit"    exits at once with status 3
//
// `demo-app fetch URL` is a one-shot probe instead: it GETs URL (3 s
// timeout), prints "fetch URL: <status>" or "fetch URL: error: …" and exits
// 0 on an answer, 1 on none (the tests check what a container can reach).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "fetch" {
		os.Exit(fetch(os.Args[2]))
	}
	node := os.Getenv("DYNIA_NODE_ID")
	version := os.Getenv("DEMO_APP_VERSION")
	addr := os.Getenv("DEMO_APP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	mode := os.Getenv("DEMO_APP_MODE")
	switch mode {
	case "", "broken":
	case "exit":
		fmt.Fprintf(os.Stderr, "demo-app %s: DEMO_APP_MODE=exit, exiting with status 3\n", version)
		os.Exit(3)
	default:
		fmt.Fprintf(os.Stderr, "demo-app: unknown DEMO_APP_MODE %q\n", mode)
		os.Exit(2)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if mode == "broken" {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintln(w, "broken")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "%s %s\n", node, version)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) // exiting anyway
	}()
	fmt.Fprintf(os.Stderr, "demo-app %s: node %q listening on %s\n", version, node, addr)
	if mode == "broken" {
		fmt.Fprintf(os.Stderr, "demo-app %s: DEMO_APP_MODE=broken, /healthz answers 500\n", version)
	}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "demo-app: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "demo-app %s: stopped\n", version)
}

func fetch(url string) int {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Printf("fetch %s: error: %v\n", url, err)
		return 1
	}
	_ = resp.Body.Close() // status is all we report
	fmt.Printf("fetch %s: %s\n", url, resp.Status)
	return 0
}
