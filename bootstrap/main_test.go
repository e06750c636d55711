package bootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racklet/rack/firmware"
)

// TestMainFiles runs Main as racklet-init does, on files: the configuration
// file, the kernel command line and the trust directory.
func TestMainFiles(t *testing.T) {
	key := newKey(t)
	s := newTestServer(t)
	image := s.serve("/images/os.img", sign(t, key, firmware.ComponentOS, testBootImage()))

	tests := []struct {
		name     string
		cmdline  string
		keys     bool
		wantErr  error
		stages   string
		reason   string
		wantBoot bool
	}{
		{name: "good", cmdline: "console=ttyS0 racklet.image=" + image, keys: true, stages: "bootstrap,image-verified", wantBoot: true},
		{
			name: "http image on the command line", cmdline: "racklet.image=" + strings.Replace(image, "https:", "http:", 1), keys: true,
			wantErr: ErrInsecureURL, stages: "bootstrap!", reason: "only https is allowed",
		},
		{name: "no trusted keys", cmdline: "racklet.image=" + image, wantErr: ErrConfig, stages: "bootstrap!", reason: "no trusted image signing keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			trust := writeTrustDir(t, s.caPEM())
			if tc.keys {
				trust = writeTrustDir(t, s.caPEM(), pubOf(key))
			}
			dir := t.TempDir()
			cfgFile, cmdFile := filepath.Join(dir, "bootstrap.json"), filepath.Join(dir, "cmdline")
			cfg := `{"node":"` + node + `","api":["` + s.URL + `"],"trustDir":"` + trust + `"}`
			if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cmdFile, []byte(tc.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			booter := &recordingBooter{}
			err := Main(context.Background(), MainOptions{ConfigFile: cfgFile, CmdlineFile: cmdFile, Booter: booter})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Main = %v, want %v", err, tc.wantErr)
			}
			got := s.stages(node)
			if stageList(got) != tc.stages {
				t.Fatalf("stages %q, want %q", stageList(got), tc.stages)
			}
			if tc.reason != "" && !strings.Contains(got[len(got)-1].Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", got[len(got)-1].Reason, tc.reason)
			}
			if n := len(booter.booted()); (n == 1) != tc.wantBoot || n > 1 {
				t.Errorf("kexec called %d times", n)
			}
		})
	}
}
