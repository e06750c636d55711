package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// DefaultCmdlineFile is where the kernel command line is read from.
const DefaultCmdlineFile = "/proc/cmdline"

// MainOptions are what the racklet-init program passes to Main.
type MainOptions struct {
	// PID1: the program runs as init, so it sets the system up first
	// (SetupSystem) and raises the clock to the trust anchors' epoch.
	PID1 bool
	// ConfigFile (default DefaultConfigFile) and CmdlineFile (default
	// DefaultCmdlineFile) are read for the Config.
	ConfigFile, CmdlineFile string
	// Booter hands over (default: a Kexec in the initramfs's /tmp).
	Booter Booter
	Logger *slog.Logger
}

// Main is the boot environment: set the system up (as PID 1), read the
// configuration and trust anchors, then Run. A configuration error is
// reported as a failed bootstrap stage when the node and the control
// plane are known and the CA could be read.
func Main(ctx context.Context, o MainOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.PID1 {
		if err := SetupSystem(log); err != nil {
			log.Warn("system setup incomplete", "err", err)
		}
	}
	if o.ConfigFile == "" {
		o.ConfigFile = DefaultConfigFile
	}
	if o.CmdlineFile == "" {
		o.CmdlineFile = DefaultCmdlineFile
	}
	cmdline, err := os.ReadFile(o.CmdlineFile)
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	cfg, cfgErr := LoadConfig(o.ConfigFile, string(cmdline))
	if cfgErr == nil {
		cfgErr = cfg.Validate()
	}
	creds, credErr := LoadCredentials(cfg)
	logCredentials(log, creds)
	trust, trustErr := LoadTrust(cfg.TrustDir, cfg.KeyID)
	if o.PID1 && trustErr == nil {
		if raised, err := RaiseClock(trust.Epoch); err != nil {
			log.Warn("clock not set", "err", err)
		} else if raised {
			log.Info("clock raised to the epoch", "epoch", trust.Epoch)
		}
	}
	if err := firstErr(cfgErr, credErr, trustErr); err != nil {
		log.Error("bootstrap cannot start", "err", err)
		// Report it if the node, the control plane and the CA are known,
		// with what credentials could be read.
		if cas, caErr := LoadCAs(cfg.TrustDir); caErr == nil && cfg.Node != "" && len(cfg.APIs) > 0 {
			reporter := &HTTPReporter{Client: NewReportClient(Trust{CAs: cas}, creds), APIs: cfg.APIs, Node: cfg.Node, Token: creds.Token}
			b := &Bootstrap{Reporter: reporter, Logger: log}
			b.report(ctx, failure(StageBootstrap, err, ""))
		}
		return err
	}
	client := NewHTTPClient(trust)
	reporter := &HTTPReporter{Client: NewReportClient(trust, creds), APIs: cfg.APIs, Node: cfg.Node, Token: creds.Token}
	booter := o.Booter
	if booter == nil {
		booter = &Kexec{Logger: log}
	}
	b := &Bootstrap{Config: cfg, Trust: trust, Client: client, Reporter: reporter, Booter: booter, Logger: log}
	return b.Run(ctx)
}

// logCredentials says what the stage reports will carry: where the token
// came from (never the token) and whose certificate.
func logCredentials(log *slog.Logger, cr Credentials) {
	var attrs []any
	if cr.Token != "" {
		attrs = append(attrs, "token_from", cr.TokenFrom)
	}
	if cr.Cert != nil && cr.Cert.Leaf != nil {
		attrs = append(attrs, "certificate", cr.Cert.Leaf.Subject.CommonName, "certificate_serial", cr.Cert.Leaf.SerialNumber.Text(16))
	}
	if len(attrs) == 0 {
		log.Info("stage reports carry no credentials (enough only for a control plane without authentication)")
		return
	}
	log.Info("stage reports carry the node's credentials", attrs...)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
