// Command racklet-init is the boot environment of a Racklet node: it runs
// as init (PID 1) in the u-root initramfs that `make initramfs` builds,
// fetches and verifies the node's OS image over HTTPS, reports its boot
// stages to the control plane and kexecs the image's kernel. See package
// bootstrap for what it reads and does.
//
// Run by hand (not as PID 1) it does the same without setting the system
// up; -dry-run stops after verifying (and reporting image-verified).
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/racklet/rack/bootstrap"
)

func main() {
	config := flag.String("config", bootstrap.DefaultConfigFile, "configuration file (JSON; optional)")
	cmdline := flag.String("cmdline", bootstrap.DefaultCmdlineFile, "file holding the kernel command line")
	dryRun := flag.Bool("dry-run", false, "verify the image and report, but do not kexec")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "racklet-init")
	pid1 := os.Getpid() == 1
	var booter bootstrap.Booter
	if *dryRun {
		booter = bootstrap.DryRun{Logger: log}
	}
	err := bootstrap.Main(context.Background(), bootstrap.MainOptions{
		PID1: pid1, ConfigFile: *config, CmdlineFile: *cmdline, Booter: booter, Logger: log,
	})
	if err == nil {
		return
	}
	log.Error("boot failed", "err", err)
	if !pid1 {
		os.Exit(1)
	}
	// init must not exit (the kernel would panic): wait for the control
	// plane, which has seen the failed stage, to power-cycle the node.
	log.Error("waiting for a power cycle")
	for {
		time.Sleep(time.Hour)
	}
}
