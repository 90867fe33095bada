// Command dosim runs the DigitalOcean simulator on its own: the API on one
// address and the metadata service on another, until interrupted. Tokens come
// from the environment (DOSIM_TOKEN full scope, DOSIM_NODE_TOKEN node scope)
// so they never appear in process listings; with neither set, any bearer
// token is accepted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dynia/dynia/internal/dosim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "dosim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("dosim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	api := fs.String("api", "127.0.0.1:8080", "API listen address (empty to disable)")
	md := fs.String("metadata", "127.0.0.1:8081", "metadata service listen address (empty to disable)")
	dropletDelay := fs.Duration("droplet-delay", 0, "time a droplet stays new")
	actionDelay := fs.Duration("action-delay", 0, "time an action stays in-progress")
	ripLimit := fs.Int("reserved-ip-limit", 3, "reserved IPs per account")
	rate := fs.Int("rate-limit", 0, "requests per minute per token (0 = unlimited)")
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv := dosim.New(dosim.Options{DropletActiveDelay: *dropletDelay, ActionDelay: *actionDelay,
		ReservedIPLimit: *ripLimit, RateLimitPerMinute: *rate, Logger: log})
	if t := getenv("DOSIM_TOKEN"); t != "" {
		srv.AddToken(t, dosim.FullScopes()...)
	}
	if t := getenv("DOSIM_NODE_TOKEN"); t != "" {
		srv.AddToken(t, dosim.NodeScopes()...)
	}
	log.Info("dosim serving", "api", *api, "metadata", *md)
	return srv.ListenAndServe(ctx, *api, *md)
}
