package bootstrap

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// tarOf writes entries as tar (format f) the way tools do: each entry a
// header and, for regular files, its data.
func tarOf(t testing.TB, f tar.Format, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		data := []byte(h.Linkname) // the test's way to give a file's content
		if h.Typeflag == tar.TypeReg {
			h.Linkname = ""
			h.Size = int64(len(data))
		}
		h.Format, h.ModTime, h.Mode = f, time.Unix(1700000000, 0), 0o644
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, content string) tar.Header {
	return tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: content}
}

func TestImageRoundTrip(t *testing.T) {
	for _, img := range []*BootImage{
		testBootImage(),
		{Kernel: []byte{1}},
		{Kernel: []byte("k"), Cmdline: "console=ttyAMA0"},
		{Kernel: []byte("k"), Initrd: []byte("i")},
	} {
		b, err := EncodeImage(img)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeImage(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Kernel, img.Kernel) || !bytes.Equal(got.Initrd, img.Initrd) || got.Cmdline != img.Cmdline {
			t.Errorf("round trip of %d/%d/%q gave %d/%d/%q", len(img.Kernel), len(img.Initrd), img.Cmdline, len(got.Kernel), len(got.Initrd), got.Cmdline)
		}
		again, _ := EncodeImage(img)
		if !bytes.Equal(b, again) {
			t.Error("EncodeImage is not deterministic")
		}
	}
	if _, err := EncodeImage(&BootImage{}); !errors.Is(err, ErrImage) {
		t.Errorf("EncodeImage without a kernel = %v, want ErrImage", err)
	}
}

func TestDecodeImage(t *testing.T) {
	tests := []struct {
		name    string
		tar     []byte
		want    *BootImage
		wantErr string
	}{
		{
			name: "as tar -C dir -cf os.img . writes it (GNU, ./ names)",
			tar:  tarOf(t, tar.FormatGNU, tar.Header{Name: "./", Typeflag: tar.TypeDir}, file("./kernel", "K"), file("./initrd", "I"), file("./cmdline", "console=ttyS0 quiet\n")),
			want: &BootImage{Kernel: []byte("K"), Initrd: []byte("I"), Cmdline: "console=ttyS0 quiet"},
		},
		{
			name: "pax, any order",
			tar:  tarOf(t, tar.FormatPAX, file("cmdline", "a=b"), file("kernel", "K")),
			want: &BootImage{Kernel: []byte("K"), Cmdline: "a=b"},
		},
		{name: "no kernel", tar: tarOf(t, tar.FormatUSTAR, file("initrd", "I")), wantErr: "no kernel"},
		{name: "empty kernel", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "")), wantErr: "no kernel"},
		{name: "kernel twice", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "K"), file("./kernel", "L")), wantErr: "kernel twice"},
		{name: "other file", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "K"), file("dtb", "D")), wantErr: `unexpected entry "dtb"`},
		{name: "path", tar: tarOf(t, tar.FormatUSTAR, file("boot/kernel", "K")), wantErr: "unexpected entry"},
		{name: "symlink", tar: tarOf(t, tar.FormatUSTAR, tar.Header{Name: "kernel", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}), wantErr: "not a regular file"},
		{name: "two dot dirs", tar: tarOf(t, tar.FormatUSTAR, tar.Header{Name: "./", Typeflag: tar.TypeDir}, tar.Header{Name: "./", Typeflag: tar.TypeDir}, file("kernel", "K")), wantErr: "unexpected entry"},
		{name: "control character in cmdline", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "K"), file("cmdline", "a\x00b")), wantErr: "cmdline"},
		{name: "two-line cmdline", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "K"), file("cmdline", "a\nb\n")), wantErr: "cmdline"},
		{name: "long cmdline", tar: tarOf(t, tar.FormatUSTAR, file("kernel", "K"), file("cmdline", strings.Repeat("a", MaxCmdline+2))), wantErr: "cmdline is"},
		{name: "not a tar", tar: []byte("hello"), wantErr: "invalid boot image"},
		{name: "empty", tar: nil, wantErr: "no kernel"},
		{name: "truncated data", tar: tarOf(t, tar.FormatUSTAR, file("kernel", strings.Repeat("K", 600)))[:1024], wantErr: "reading kernel"},
		{name: "truncated", tar: tarOf(t, tar.FormatUSTAR, file("kernel", strings.Repeat("K", 2000)))[:1024], wantErr: "kernel claims 2000 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeImage(tc.tar)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DecodeImage = %v, want ErrImage saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Kernel, tc.want.Kernel) || !bytes.Equal(got.Initrd, tc.want.Initrd) || got.Cmdline != tc.want.Cmdline {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
