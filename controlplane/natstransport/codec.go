package natstransport

import (
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/nats-io/nats.go"
)

// msgpackHandle matches raft's NetworkTransport (TimeNotBuiltin keeps the
// time format every go-msgpack decoder understands). A handle is safe for
// concurrent use once configured.
var msgpackHandle = &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}}

func encode(v any) ([]byte, error) {
	var buf []byte
	if err := codec.NewEncoderBytes(&buf, msgpackHandle).Encode(v); err != nil {
		return nil, err
	}
	return buf, nil
}

func decode(buf []byte, v any) error {
	if len(buf) == 0 {
		return fmt.Errorf("%w: empty body", ErrBadMessage)
	}
	if err := codec.NewDecoderBytes(buf, msgpackHandle).Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	return nil
}

// decodeReply turns a reply into resp or into the remote side's error.
func decodeReply(reply *nats.Msg, resp any) error {
	if e := reply.Header.Get(hdrError); e != "" {
		return fmt.Errorf("%w: %s", ErrRemote, e)
	}
	if len(reply.Data) == 0 {
		if s := reply.Header.Get("Status"); s != "" {
			return fmt.Errorf("%w: status %s %s", ErrBadMessage, s, reply.Header.Get("Description"))
		}
	}
	if resp == nil {
		return nil
	}
	if err := decode(reply.Data, resp); err != nil {
		return fmt.Errorf("decoding reply: %w", err)
	}
	return nil
}

// replyMsg builds the reply to a request: the encoded response, or the
// error in a header. seq, if set, is echoed for the pipeline.
func replyMsg(resp any, err error, seq string) *nats.Msg {
	m := &nats.Msg{Header: nats.Header{}}
	if seq != "" {
		m.Header.Set(hdrSeq, seq)
	}
	if err != nil {
		m.Header.Set(hdrError, err.Error())
		return m
	}
	if resp != nil {
		data, eerr := encode(resp)
		if eerr != nil {
			m.Header.Set(hdrError, fmt.Sprintf("encoding response: %v", eerr))
			return m
		}
		m.Data = data
	}
	return m
}
