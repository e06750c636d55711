package natstransport

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
)

// FuzzDecode feeds arbitrary bytes to the request and reply decoders: they
// may fail but must not panic.
func FuzzDecode(f *testing.F) {
	for _, v := range []any{
		&raft.AppendEntriesRequest{Term: 3, Entries: []*raft.Log{{Index: 1, Data: []byte("x")}}},
		&raft.RequestVoteRequest{Term: 2},
		&raft.InstallSnapshotRequest{Size: 10},
		&raft.AppendEntriesResponse{Success: true},
	} {
		buf, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = decode(data, &raft.AppendEntriesRequest{})
		_ = decode(data, &raft.RequestVoteRequest{})
		_ = decode(data, &raft.RequestPreVoteRequest{})
		_ = decode(data, &raft.TimeoutNowRequest{})
		_ = decode(data, &raft.InstallSnapshotRequest{})
		_ = decodeReply(&nats.Msg{Data: data}, &raft.AppendEntriesResponse{})
	})
}
