// Command racklet-initramfs builds the boot environment's initramfs with
// u-root (`make initramfs` runs it): racklet-init as /init, and the
// trust anchors and configuration given. See package bootstrap/initramfs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/racklet/rack/bootstrap/initramfs"
)

func main() {
	var o initramfs.Options
	var keys string
	flag.StringVar(&o.Output, "o", "bin/initramfs.cpio", "the cpio archive to write")
	flag.StringVar(&o.GOARCH, "arch", "", "target architecture, e.g. arm64 (default: the host's)")
	flag.StringVar(&o.Config, "config", "", "racklet-init configuration (JSON) to include as /etc/racklet/bootstrap.json")
	flag.StringVar(&o.CA, "ca", "", "CA certificates (PEM) HTTPS servers must chain to, included as /etc/racklet/ca.crt")
	flag.StringVar(&keys, "keys", "", "public key files trusted to sign OS images, separated by spaces or commas")
	flag.StringVar(&o.Token, "token", "", "one node's bearer token file (rackctl pki token node NAME --out FILE), included as /etc/racklet/token")
	flag.StringVar(&o.NodeCert, "node-cert", "", "one node's certificate (rackctl pki issue node NAME), included as /etc/racklet/node.crt")
	flag.StringVar(&o.NodeKey, "node-key", "", "that certificate's key, included as /etc/racklet/node.key")
	flag.Parse()
	o.Keys = strings.FieldsFunc(keys, func(r rune) bool { return r == ',' || r == ' ' })
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o.Logger = log
	// Reproducible builds: SOURCE_DATE_EPOCH fixes the epoch.
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "racklet-initramfs: SOURCE_DATE_EPOCH %q is not a number of seconds\n", s)
			os.Exit(2)
		}
		o.Epoch = time.Unix(sec, 0)
	}
	if o.CA == "" || len(o.Keys) == 0 {
		log.Warn("no CA or no keys given: racklet-init will refuse to boot until both are in the initramfs")
	}
	if o.Token != "" || o.NodeCert != "" {
		log.Warn("the initramfs holds a node's credentials: it belongs to that node only; keep it from others (local storage, not plain TFTP)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := initramfs.Build(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "racklet-initramfs: %v\n", err)
		os.Exit(1)
	}
}
