package record

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/shmkit/shmkit/record/wire"
)

// FuzzReply feeds arbitrary bytes to the client's reply path (framing,
// message decoding, bin conversion, the check for bytes after the reply)
// as each command kind: it must end in a result or a typed error, never a
// panic, and a Get that succeeds returns values that own their memory.
func FuzzReply(f *testing.F) {
	ok, _ := wire.AppendReply(nil, &wire.Header{Generation: 3}, []wire.Op{
		{Type: wire.OpRead, Bin: "i", Value: wire.IntValue(7)},
		{Type: wire.OpRead, Bin: "b", Value: wire.BytesValue([]byte{1, 2})},
	})
	l, _ := wire.ListValue([]any{int64(1), "a", []byte{3}})
	list, _ := wire.AppendReply(nil, &wire.Header{}, []wire.Op{{Type: wire.OpRead, Bin: "l", Value: l}})
	nf, _ := wire.AppendReply(nil, &wire.Header{ResultCode: wire.ResultKeyNotFound}, nil)
	for _, seed := range [][]byte{ok, list, nf, ok[:len(ok)-1], append(ok, 0), {2, 3, 0, 0, 0, 0, 0, 0}} {
		f.Add(seed, uint8(0))
	}
	key, err := wire.NewKey("test", "demo", "k")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		cn := &conn{br: bufio.NewReaderSize(bytes.NewReader(data), connReadBuffer)}
		cmd := command{kind: kind(k % uint8(len(kindNames))), key: key, wp: &defaultWritePolicy}
		body, err := readReply(cn)
		if err == nil {
			err = cmd.decode(cn, body)
		}
		var rc wire.ResultCode
		switch {
		case err == nil:
			if cmd.kind == kindGet {
				if cmd.rec == nil {
					t.Fatal("get: no record and no error")
				}
				for name, v := range cmd.rec.Bins {
					if _, err := ownCheck(v); err != nil {
						t.Fatalf("bin %q: %v", name, err)
					}
				}
				// The record must not share the reply's bytes: clearing
				// them (and the connection's buffers) changes nothing.
				before := fmt.Sprintf("%#v", cmd.rec.Bins)
				clear(data)
				clear(cn.rbuf[:cap(cn.rbuf)])
				if after := fmt.Sprintf("%#v", cmd.rec.Bins); after != before {
					t.Fatalf("bins changed with the reply buffer: %s, then %s", before, after)
				}
			}
		case errors.Is(err, ErrNetwork), errors.Is(err, ErrProtocol), errors.As(err, &rc):
		default:
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// ownCheck checks that a decoded value and everything in it has one of
// the documented Go types.
func ownCheck(v any) (int, error) {
	switch v := v.(type) {
	case nil, int64, float64, string, bool, []byte:
		return 1, nil
	case []any:
		n := 0
		for _, e := range v {
			m, err := ownCheck(e)
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	case map[any]any:
		n := 0
		for k, e := range v {
			if _, err := ownCheck(k); err != nil {
				return 0, err
			}
			m, err := ownCheck(e)
			if err != nil {
				return 0, err
			}
			n += m
		}
		return n, nil
	}
	return 0, errors.New("value of an undocumented Go type")
}
