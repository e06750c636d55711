package bootstrap

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrImage: a boot image whose payload is not a well-formed boot image
// (after its signature and digest have been verified).
var ErrImage = errors.New("bootstrap: invalid boot image")

// Names of the files in a boot image.
const (
	ImageKernel  = "kernel"
	ImageInitrd  = "initrd"
	ImageCmdline = "cmdline"
)

// maxImageEntries bounds the entries a boot image may have: the three
// files and a "." directory.
const maxImageEntries = 4

// BootImage is what a node boots: a Linux kernel, an optional initramfs
// and the kernel command line.
type BootImage struct {
	Kernel  []byte
	Initrd  []byte
	Cmdline string
}

// DecodeImage reads a boot image: a tar archive (ustar, pax or GNU, as
// `tar -cf os.img kernel initrd cmdline` writes it) of regular files named
// kernel (required, not empty), initrd (optional) and cmdline (optional,
// one line of at most MaxCmdline bytes; a final newline is dropped), each
// at most once, optionally prefixed "./", beside an optional "." directory.
// Anything else — other names, links, devices, sparse files, sizes beyond
// the archive — is refused (ErrImage). The kernel and initrd are copies.
func DecodeImage(b []byte) (*BootImage, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	img := &BootImage{}
	seen := map[string]bool{}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrImage, err)
		}
		if n == maxImageEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrImage, maxImageEntries)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if hdr.Typeflag == tar.TypeDir && (name == "" || name == "." || name == "./") && !seen["."] {
			seen["."] = true
			continue
		}
		if name != ImageKernel && name != ImageInitrd && name != ImageCmdline {
			return nil, fmt.Errorf("%w: unexpected entry %q (want kernel, initrd, cmdline)", ErrImage, clip(hdr.Name))
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: %s twice", ErrImage, name)
		}
		seen[name] = true
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %s is not a regular file (type %q)", ErrImage, name, hdr.Typeflag)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return nil, fmt.Errorf("%w: %s is a sparse file", ErrImage, name)
			}
		}
		if hdr.Size < 0 || hdr.Size > int64(len(b)) {
			return nil, fmt.Errorf("%w: %s claims %d bytes in a %d-byte image", ErrImage, name, hdr.Size, len(b))
		}
		if name == ImageCmdline && hdr.Size > MaxCmdline+1 {
			return nil, fmt.Errorf("%w: cmdline is %d bytes, at most %d", ErrImage, hdr.Size, MaxCmdline)
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("%w: reading %s: %v", ErrImage, name, err)
		}
		switch name {
		case ImageKernel:
			img.Kernel = data
		case ImageInitrd:
			img.Initrd = data
		case ImageCmdline:
			img.Cmdline = strings.TrimSuffix(string(data), "\n")
		}
	}
	if len(img.Kernel) == 0 {
		return nil, fmt.Errorf("%w: no kernel", ErrImage)
	}
	if err := checkImageCmdline(img.Cmdline); err != nil {
		return nil, err
	}
	return img, nil
}

// checkImageCmdline accepts a command line the kernel takes as it is.
func checkImageCmdline(s string) error {
	if len(s) > MaxCmdline {
		return fmt.Errorf("%w: cmdline is %d bytes, at most %d", ErrImage, len(s), MaxCmdline)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("%w: cmdline: control character %q (one line wanted)", ErrImage, s[i])
	}
	if _, err := ParseCmdline(s); err != nil {
		return fmt.Errorf("%w: cmdline: %v", ErrImage, err)
	}
	return nil
}

// EncodeImage writes img as DecodeImage reads it: a ustar archive of
// kernel, initrd (if any) and cmdline (if any), mode 0644, owner 0, time
// 0, so the same image always has the same bytes (and digest).
func EncodeImage(img *BootImage) ([]byte, error) {
	if len(img.Kernel) == 0 {
		return nil, fmt.Errorf("%w: no kernel", ErrImage)
	}
	if err := checkImageCmdline(img.Cmdline); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{ImageKernel, img.Kernel}, {ImageInitrd, img.Initrd}, {ImageCmdline, []byte(img.Cmdline)}} {
		if len(f.data) == 0 {
			continue
		}
		hdr := &tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("encoding the boot image: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("encoding the boot image: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("encoding the boot image: %w", err)
	}
	return buf.Bytes(), nil
}
