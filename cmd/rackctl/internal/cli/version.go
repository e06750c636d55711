package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is rackctl's version, set at build time with
// -ldflags "-X github.com/racklet/rack/cmd/rackctl/internal/cli.Version=v1.2.3".
var Version = "dev"

// VersionInfo is what `rackctl version` prints.
type VersionInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func versionInfo() VersionInfo {
	v := VersionInfo{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	return v
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rackctl's version",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := versionInfo()
			if g.output != "table" {
				return printStructured(g.stdout, g.output, v)
			}
			rev := ""
			if v.Revision != "" {
				rev = " (" + v.Revision + ")"
			}
			_, err := fmt.Fprintf(g.stdout, "rackctl %s%s %s %s\n", v.Version, rev, v.GoVersion, v.Platform)
			return err
		},
	}
}
