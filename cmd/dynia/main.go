// Command dynia is the CLI: it edits a cluster's state object and calls the
// DigitalOcean API. All of it lives in internal/cli; main only wires signals.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynia/dynia/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.System())
	stop()
	os.Exit(code)
}
