//go:build linux

package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/boot/kexec"
)

// Kexec is the Booter of a real node: it writes the kernel and initramfs
// to files in Dir (a tmpfs; the initramfs's /tmp by default), loads them
// with kexec_file_load(2) (u-root's kexec.FileLoad) and reboots into the
// new kernel (kexec.Reboot). It needs CAP_SYS_BOOT and a kernel built with
// CONFIG_KEXEC_FILE; the kernel must be in the form kexec_file_load takes
// on the architecture (bzImage on amd64, Image on arm64).
type Kexec struct {
	Dir    string
	Logger *slog.Logger

	// load and reboot are kexec.FileLoad and kexec.Reboot; tests replace
	// them (calling the real ones would reboot the machine).
	load   func(kernel, initrd *os.File, cmdline string) error
	reboot func() error
}

var _ Booter = (*Kexec)(nil)

// Boot implements Booter. It returns only if the handover failed.
func (k *Kexec) Boot(ctx context.Context, img *BootImage) error {
	if img == nil || len(img.Kernel) == 0 {
		return errors.New("kexec: no kernel")
	}
	load, reboot := k.load, k.reboot
	if load == nil {
		load = kexec.FileLoad
	}
	if reboot == nil {
		reboot = kexec.Reboot
	}
	dir, err := os.MkdirTemp(k.Dir, "racklet-kexec-")
	if err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer os.RemoveAll(dir)
	kernel, err := readOnlyFile(filepath.Join(dir, ImageKernel), img.Kernel)
	if err != nil {
		return err
	}
	defer kernel.Close()
	var initrd *os.File
	if len(img.Initrd) > 0 {
		if initrd, err = readOnlyFile(filepath.Join(dir, ImageInitrd), img.Initrd); err != nil {
			return err
		}
		defer initrd.Close()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	if err := load(kernel, initrd, img.Cmdline); err != nil {
		return fmt.Errorf("kexec: loading the kernel: %w", err)
	}
	if k.Logger != nil {
		k.Logger.Info("kernel loaded, rebooting into it", "cmdline", img.Cmdline)
	}
	if err := reboot(); err != nil {
		return fmt.Errorf("kexec: rebooting into the kernel: %w", err)
	}
	return errors.New("kexec: reboot returned")
}

// readOnlyFile writes data to path and opens it again read-only:
// kexec_file_load refuses a file open for writing.
func readOnlyFile(path string, data []byte) (*os.File, error) {
	if err := os.WriteFile(path, data, 0o400); err != nil {
		return nil, fmt.Errorf("kexec: writing %s: %w", filepath.Base(path), err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kexec: %w", err)
	}
	return f, nil
}
