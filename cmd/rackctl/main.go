// Command rackctl is the rack's command-line client: it talks to a
// control-plane member's HTTP API. See `rackctl --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/racklet/rack/cmd/rackctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
