package bootstrap

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrCmdline: a kernel command line that cannot be parsed.
var ErrCmdline = errors.New("bootstrap: invalid kernel command line")

// MaxCmdline bounds a kernel command line (Linux allows 2048 bytes on
// amd64 and arm64, 4096 on some architectures).
const MaxCmdline = 4096

// Param is one word of a kernel command line: key=value, or a bare key
// (Value empty, HasValue false).
type Param struct {
	Key      string
	Value    string
	HasValue bool
}

// ParseCmdline splits a kernel command line (/proc/cmdline) the way the
// kernel does: words separated by spaces, tabs or newlines; double quotes
// group a word or a value ("key=a b" and key="a b" are both key → "a b");
// the quotes themselves are removed; "--" ends the kernel's parameters
// (what follows is init's arguments, ignored here); words with an empty
// key ("", "=x") are skipped. A line
// longer than MaxCmdline, with an unterminated quote, a control character
// or invalid UTF-8 is refused (ErrCmdline).
func ParseCmdline(s string) ([]Param, error) {
	if len(s) > MaxCmdline {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCmdline, len(s), MaxCmdline)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrCmdline)
	}
	var (
		params []Param
		word   strings.Builder
		inWord bool
		quoted bool
	)
	flush := func() bool {
		if !inWord {
			return true
		}
		w := word.String()
		word.Reset()
		inWord = false
		if w == "--" {
			return false
		}
		if k, v, ok := strings.Cut(w, "="); k != "" {
			params = append(params, Param{Key: k, Value: v, HasValue: ok})
		}
		return true
	}
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if !flush() {
				return params, nil
			}
		case r < 0x20 || r == 0x7f:
			return nil, fmt.Errorf("%w: control character %q", ErrCmdline, r)
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: unterminated quote", ErrCmdline)
	}
	flush()
	return params, nil
}
