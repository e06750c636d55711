package client

import (
	"strings"
	"testing"
)

// FuzzReadStream: the server-sent-events parser never panics and delivers
// only events with data.
func FuzzReadStream(f *testing.F) {
	for _, s := range []string{
		"id: 1\nevent: io.racklet.node.registered\ndata: {}\n\n",
		": keep-alive\n\nretry: 1000\n\n",
		"data: a\ndata: b\n\n",
		"event: error\ndata: {\"code\":\"unavailable\",\"message\":\"x\"}\n\n",
		"id\ndata\n\n", "\n\n\n", "data:", "data: x\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := readStream(strings.NewReader(s), func(id, typ, data string) error {
			return nil
		})
		if err == nil {
			t.Fatal("readStream returned nil, want errStreamEnded or a read error")
		}
	})
}
