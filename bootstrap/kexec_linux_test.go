//go:build linux

package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKexecFiles checks what Kexec hands to kexec_file_load (replaced
// here: the real call would reboot the machine): the kernel and initrd as
// files open read-only with the image's bytes, the command line, then the
// reboot; no reboot when loading fails; the files are gone afterwards.
func TestKexecFiles(t *testing.T) {
	img := testBootImage()
	dir := t.TempDir()
	var order []string
	k := &Kexec{
		Dir: dir,
		load: func(kernel, initrd *os.File, cmdline string) error {
			order = append(order, "load")
			for _, c := range []struct {
				f    *os.File
				want []byte
			}{{kernel, img.Kernel}, {initrd, img.Initrd}} {
				if c.f == nil {
					t.Fatal("no file")
				}
				flags, err := unix.FcntlInt(c.f.Fd(), unix.F_GETFL, 0)
				if err != nil || flags&(unix.O_WRONLY|unix.O_RDWR) != 0 {
					t.Errorf("%s open with flags %#x (%v), want read-only", c.f.Name(), flags, err)
				}
				got, err := io.ReadAll(c.f)
				if err != nil || !bytes.Equal(got, c.want) {
					t.Errorf("%s holds %d bytes (%v), want %d", c.f.Name(), len(got), err, len(c.want))
				}
			}
			if cmdline != img.Cmdline {
				t.Errorf("cmdline %q, want %q", cmdline, img.Cmdline)
			}
			return nil
		},
		reboot: func() error {
			order = append(order, "reboot")
			return errors.New("reboot: operation not permitted")
		},
	}
	err := k.Boot(context.Background(), img)
	if err == nil || len(order) != 2 || order[0] != "load" || order[1] != "reboot" {
		t.Fatalf("Boot = %v after %v; want load, reboot, and the reboot's error", err, order)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}

	// No initrd: kexec gets none; a failed load does not reboot.
	order = nil
	k.load = func(kernel, initrd *os.File, cmdline string) error {
		order = append(order, "load")
		if initrd != nil {
			t.Error("an initrd for an image without one")
		}
		return unix.EPERM
	}
	err = k.Boot(context.Background(), &BootImage{Kernel: []byte("k")})
	if !errors.Is(err, unix.EPERM) || len(order) != 1 {
		t.Fatalf("Boot = %v after %v; want EPERM and no reboot", err, order)
	}
	if err := k.Boot(context.Background(), &BootImage{}); err == nil {
		t.Error("Boot without a kernel succeeded")
	}
}
