//go:build linux

package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// mounts are the file systems the boot environment needs as PID 1: /dev
// (devtmpfs), /proc, /sys and a tmpfs /tmp for the kernel handed to kexec.
var mounts = []struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}{
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// SetupSystem prepares a bare initramfs, as u-root's libinit does for its
// init: mounts /dev, /proc, /sys and /tmp (already mounted is fine) and
// brings the loopback interface up. The network itself is the kernel's
// (ip=dhcp on its command line). Run it only as PID 1.
func SetupSystem(log *slog.Logger) error {
	var errs []error
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("creating %s: %w", m.target, err))
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err))
		}
	}
	if err := loopbackUp(); err != nil {
		log.Warn("loopback not up", "err", err)
	}
	return errors.Join(errs...)
}

// loopbackUp sets IFF_UP on lo.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: reading flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: setting flags: %w", err)
	}
	return nil
}

// RaiseClock sets the system clock to epoch if it is behind it (a node
// without a real-time clock starts in 1970), as systemd does with its
// build time. Run it only as PID 1.
func RaiseClock(epoch time.Time) (bool, error) {
	if epoch.IsZero() || !time.Now().Before(epoch) {
		return false, nil
	}
	tv := unix.NsecToTimeval(epoch.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return false, fmt.Errorf("setting the clock to %s: %w", epoch.Format(time.RFC3339), err)
	}
	return true, nil
}
