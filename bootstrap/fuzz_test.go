package bootstrap

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// FuzzParseCmdline: any line parses or is refused with ErrCmdline; the
// words of a parsed line, written back (quoted), parse to the same words.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"", "quiet", `a="b c" d=e -- f`, "racklet.node=n3 racklet.api=https://a,https://b", "racklet.token=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJuMyJ9.c2ln racklet.node=n3", `"unterminated`, "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		params, err := ParseCmdline(s)
		if err != nil {
			if !errors.Is(err, ErrCmdline) {
				t.Fatalf("error %v does not match ErrCmdline", err)
			}
			return
		}
		var words []string
		for _, p := range params {
			if p.Key == "" || strings.Contains(p.Key, `"`) || strings.Contains(p.Value, `"`) {
				t.Fatalf("param %#v keeps a quote or has no key", p)
			}
			w := p.Key
			if p.HasValue {
				w += "=" + p.Value
			}
			words = append(words, `"`+w+`"`)
		}
		line := strings.Join(words, " ")
		if len(line) > MaxCmdline {
			return
		}
		again, err := ParseCmdline(line)
		if err != nil || len(again) != len(params) {
			t.Fatalf("re-parse of %q: %v, %v; want %v", line, again, err, params)
		}
		for i := range again {
			if again[i] != params[i] {
				t.Fatalf("re-parse of %q: %v, want %v", line, again, params)
			}
		}
	})
}

// FuzzConfig: a configuration file and a command line either load or
// are refused with ErrConfig, ErrInsecureURL or ErrCmdline; what loads
// holds only https URLs and valid names.
func FuzzConfig(f *testing.F) {
	f.Add(`{"node":"n3","api":["https://a:1"],"image":"https://a/os.img","keyId":"`+goodKey+`","imageDigest":"`+goodDigest+`"}`, "racklet.node=n4")
	f.Add(`{}`, "racklet.image=http://a/os.img racklet.api=https://b,https://c")
	f.Add(`{"api":["tftp://x"]}`, "racklet.key=0123 racklet.digest=sha256:")
	f.Add(`{"node":"n3","token":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJuMyJ9.c2ln"}`, "racklet.token=a.b.c")
	f.Add(`{"token":"not a token"}`, "racklet.token=a.b racklet.token=x.y.z")
	f.Fuzz(func(t *testing.T, file, line string) {
		c, err := DecodeConfig(strings.NewReader(file))
		if err != nil {
			if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrInsecureURL) {
				t.Fatalf("DecodeConfig error %v matches no sentinel", err)
			}
			c = Config{}
		}
		params, err := ParseCmdline(line)
		if err != nil {
			return
		}
		if err := c.ApplyCmdline(params); err != nil && !errors.Is(err, ErrConfig) && !errors.Is(err, ErrInsecureURL) {
			t.Fatalf("ApplyCmdline error %v matches no sentinel", err)
		}
		// Whatever was applied is valid, error or not.
		for _, u := range append([]string{c.Image}, c.APIs...) {
			if u != "" && CheckURL(u) != nil {
				t.Fatalf("config holds a URL that does not check: %q", u)
			}
		}
		if c.Node != "" && !validNode(c.Node) {
			t.Fatalf("config holds node %q", c.Node)
		}
		if c.Token != "" && checkToken(string(c.Token)) != nil {
			t.Fatalf("config holds a token that does not check (%d bytes)", len(c.Token))
		}
		if c.Token != "" && fmt.Sprintf("%v|%s|%q|%#v", c.Token, c.Token, c.Token, c.Token) != `[redacted]|[redacted]|"[redacted]"|"[redacted]"` {
			t.Fatal("the token prints")
		}
	})
}

func validNode(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// FuzzDecodeImage: any bytes decode or are refused with ErrImage; what
// decodes encodes to an image that decodes to the same.
func FuzzDecodeImage(f *testing.F) {
	for _, img := range []*BootImage{{Kernel: []byte("k"), Cmdline: "a=b c"}, {Kernel: []byte("kernel"), Initrd: []byte("initrd")}} {
		b, err := EncodeImage(img)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(tarOf(f, tar.FormatGNU, tar.Header{Name: "./", Typeflag: tar.TypeDir}, file("./kernel", "K"), file("./cmdline", "q\n")))
	f.Add(tarOf(f, tar.FormatPAX, file("kernel", "K"), tar.Header{Name: "initrd", Typeflag: tar.TypeSymlink, Linkname: "x"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := DecodeImage(b)
		if err != nil {
			if !errors.Is(err, ErrImage) {
				t.Fatalf("error %v does not match ErrImage", err)
			}
			return
		}
		enc, err := EncodeImage(img)
		if err != nil {
			t.Fatalf("a decoded image does not encode: %v", err)
		}
		again, err := DecodeImage(enc)
		if err != nil || !bytes.Equal(again.Kernel, img.Kernel) || !bytes.Equal(again.Initrd, img.Initrd) || again.Cmdline != img.Cmdline {
			t.Fatalf("round trip changed the image (%v)", err)
		}
	})
}

// FuzzParseDigestEpoch: digests and epochs parse to values that print
// back as they were read, or are refused with ErrConfig.
func FuzzParseDigestEpoch(f *testing.F) {
	f.Add(goodDigest)
	f.Add("2026-05-01T12:00:00Z")
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		switch {
		case err == nil && d.String() != s:
			t.Fatalf("digest %q prints as %q", s, d)
		case err != nil && !errors.Is(err, ErrConfig):
			t.Fatalf("ParseDigest error %v does not match ErrConfig", err)
		}
		if _, err := ParseEpoch([]byte(s)); err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("ParseEpoch error %v does not match ErrConfig", err)
		}
	})
}
