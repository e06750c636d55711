package member

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigFileAndValidation(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Name, c.DataDir = "m1", "/tmp/x"
		return c
	}
	tests := []struct {
		name    string
		yaml    string
		edit    func(*Config)
		wantErr string // "" = valid
		check   func(*testing.T, Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.HTTP != DefaultHTTP || c.NATS != DefaultNATS || c.NATSCluster != DefaultNATSCluster || c.Rack != DefaultRack {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "file overrides", yaml: "name: m2\nrack: lab\nhttp: 127.0.0.1:9000\njoin: [nats://127.0.0.1:6222]\nelection-timeout: 750ms\n", check: func(t *testing.T, c Config) {
			if c.Name != "m2" || c.Rack != "lab" || c.HTTP != "127.0.0.1:9000" || len(c.Join) != 1 || c.ElectionTimeout.String() != "750ms" {
				t.Errorf("loaded = %+v", c)
			}
		}},
		{name: "unknown key", yaml: "nmae: m2\n", wantErr: "field nmae not found"},
		{name: "bad yaml", yaml: "name: [\n", wantErr: "parsing config"},
		{name: "bad name", edit: func(c *Config) { c.Name = "M_1" }, wantErr: "invalid name"},
		{name: "bad rack", edit: func(c *Config) { c.Rack = "" }, wantErr: "invalid rack"},
		{name: "no data dir", edit: func(c *Config) { c.DataDir = "" }, wantErr: "data-dir is required"},
		{name: "bad address", edit: func(c *Config) { c.HTTP = "7480" }, wantErr: "invalid http address"},
		{name: "bad join", edit: func(c *Config) { c.Join = []string{"127.0.0.1:6222"} }, wantErr: "invalid join URL"},
		{name: "bootstrap and join", edit: func(c *Config) { c.Bootstrap, c.Join = true, []string{"nats://127.0.0.1:6222"} }, wantErr: "exclude each other"},
		{name: "bad log level", edit: func(c *Config) { c.LogLevel = "loud" }, wantErr: "invalid log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			var err error
			if tt.yaml != "" {
				path := filepath.Join(t.TempDir(), "rackd.yaml")
				if werr := os.WriteFile(path, []byte(tt.yaml), 0o600); werr != nil {
					t.Fatal(werr)
				}
				err = c.LoadFile(path)
			}
			if tt.edit != nil {
				tt.edit(&c)
			}
			if err == nil {
				err = c.Validate()
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	c := valid()
	if err := c.LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Fatalf("missing file: %v", err)
	}
}
