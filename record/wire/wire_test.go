package wire_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
)

func mustValue(t *testing.T, x any) wire.Value {
	t.Helper()
	v, err := wire.ValueOf(x)
	if err != nil {
		t.Fatalf("ValueOf(%#v): %v", x, err)
	}
	return v
}

// particleCases is one value of every particle type, with the Go value
// Any returns for it.
func particleCases(t *testing.T) []struct {
	name string
	in   wire.Value
	want any
} {
	list := []any{int64(1), int64(-1), int64(-33), int64(200), int64(70000), int64(1) << 40, int64(math.MinInt64),
		uint64(math.MaxUint64), 1.5, "s", "", []byte{0, 1}, true, false, nil,
		[]any{"nested", int64(2)}, map[any]any{"k": int64(3)}}
	m := map[any]any{"str": "v", int64(7): []byte("b"), wire.BlobKey("bk"): 2.5, true: nil,
		"list": []any{int64(1), "x"}, "long": string(bytes.Repeat([]byte("z"), 300))}
	return []struct {
		name string
		in   wire.Value
		want any
	}{
		{"null", wire.NullValue(), nil},
		{"int", wire.IntValue(-1234567890123), int64(-1234567890123)},
		{"int max", wire.IntValue(math.MaxInt64), int64(math.MaxInt64)},
		{"float", wire.FloatValue(-2.75), -2.75},
		{"string", wire.StringValue("héllo"), "héllo"},
		{"empty string", wire.StringValue(""), ""},
		{"bytes", wire.BytesValue([]byte{0, 255, 3}), []byte{0, 255, 3}},
		{"bool true", wire.BoolValue(true), true},
		{"bool false", wire.BoolValue(false), false},
		{"list", mustValue(t, list), list},
		{"empty list", mustValue(t, []any{}), []any{}},
		{"map", mustValue(t, m), m},
		{"json map", mustValue(t, map[string]any{"x": 1234.0, "y": "abcd"}), map[any]any{"x": 1234.0, "y": "abcd"}},
	}
}

// TestParticleRoundTrip writes every particle type as a bin of a request,
// decodes the message and compares the value.
func TestParticleRoundTrip(t *testing.T) {
	for _, tc := range particleCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			k, err := wire.NewKey("test", "demo", "k1")
			if err != nil {
				t.Fatal(err)
			}
			h := wire.Header{Info2: wire.Info2Write, Expiration: 100}
			msg, err := wire.AppendCommand(nil, &h, &k, true, []wire.Op{{Type: wire.OpWrite, Bin: "b", Value: tc.in}})
			if err != nil {
				t.Fatal(err)
			}
			body, err := wire.ReadMessage(bytes.NewReader(msg), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			var m wire.Message
			if err := m.Decode(body); err != nil {
				t.Fatal(err)
			}
			if len(m.Ops) != 1 || m.Ops[0].Bin != "b" || m.Ops[0].Type != wire.OpWrite {
				t.Fatalf("ops %+v", m.Ops)
			}
			got := m.Ops[0].Value
			if got.Type() != tc.in.Type() {
				t.Fatalf("type %v, want %v", got.Type(), tc.in.Type())
			}
			x, err := got.Any()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(x, tc.want) {
				t.Fatalf("got %#v, want %#v", x, tc.want)
			}
			gk, err := m.Key()
			if err != nil {
				t.Fatal(err)
			}
			if gk.Namespace != "test" || gk.Set != "demo" || gk.Digest != k.Digest {
				t.Fatalf("key %+v", gk)
			}
			if s, err := gk.UserKey.AsString(); err != nil || s != "k1" {
				t.Fatalf("user key %q %v", s, err)
			}
			// The decoded user key hashes to the digest sent.
			if d, err := wire.KeyDigest(gk.Set, gk.UserKey); err != nil || d != k.Digest {
				t.Fatalf("digest of the decoded user key %v %v, want %v", d, err, k.Digest)
			}
			// Re-encoding the decoded message gives the same bytes.
			again, err := m.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, msg) {
				t.Fatalf("re-encoded message differs:\n%x\n%x", again, msg)
			}
		})
	}
}

// TestSeedDigest checks the digest of the seed's example key against the
// bytes the seed's transcript prints.
func TestSeedDigest(t *testing.T) {
	k, err := wire.NewKey("test", "demo", "myTestKey")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{149, 186, 200, 254, 138, 5, 9, 52, 115, 70, 1, 194, 131, 184, 51, 95, 232, 241, 179, 74}
	if !bytes.Equal(k.Digest[:], want) {
		t.Fatalf("digest %v, want %v", k.Digest[:], want)
	}
	ki, _ := wire.NewKey("test", "demo", 42)
	if ki.Digest != partmap.IntKeyDigest("demo", 42) {
		t.Fatal("integer key digest differs from partmap's")
	}
}

// TestAccessorsRefuseOtherTypes: every accessor of the wrong type gives
// ErrBinTypeMismatch.
func TestAccessorsRefuseOtherTypes(t *testing.T) {
	v := wire.StringValue("x")
	if _, err := v.AsInt(); !errors.Is(err, wire.ErrBinTypeMismatch) {
		t.Fatalf("AsInt of a string: %v", err)
	}
	if _, err := wire.IntValue(1).AsString(); !errors.Is(err, wire.ErrBinTypeMismatch) {
		t.Fatalf("AsString of an int: %v", err)
	}
	if _, err := wire.IntValue(1).AsList(); !errors.Is(err, wire.ErrBinTypeMismatch) {
		t.Fatalf("AsList of an int: %v", err)
	}
}

// TestResultCodes: every code is an error usable with errors.Is through
// wrapping, and only its own sentinel matches.
func TestResultCodes(t *testing.T) {
	for c := range 256 {
		code := wire.ResultCode(c)
		err := wrapErr{code.Err()}
		if code == wire.ResultOK {
			if code.Err() != nil {
				t.Fatal("ResultOK.Err() != nil")
			}
			continue
		}
		if !errors.Is(err, code) {
			t.Fatalf("errors.Is(%v, %d) false", err, c)
		}
		if errors.Is(err, wire.ErrKeyNotFound) != (code == 2) {
			t.Fatalf("errors.Is(%v, ErrKeyNotFound) wrong", err)
		}
		var got wire.ResultCode
		if !errors.As(err, &got) || got != code {
			t.Fatalf("errors.As gives %v", got)
		}
	}
	if wire.ErrGenerationMismatch != 3 || wire.ErrKeyExists != 5 || wire.ErrBinTypeMismatch != 12 || wire.ErrServerTimeout != 9 {
		t.Fatal("sentinel numbering")
	}
	if wire.ResultKeyNotFound.Error() != "aerospike: key not found (2)" {
		t.Fatal(wire.ResultKeyNotFound.Error())
	}
}

type wrapErr struct{ err error }

func (w wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapErr) Unwrap() error { return w.err }

// TestReplyRoundTrip encodes a reply and decodes it.
func TestReplyRoundTrip(t *testing.T) {
	h := wire.Header{ResultCode: wire.ResultOK, Generation: 7, Expiration: 12345}
	msg, err := wire.AppendReply(nil, &h, []wire.Op{
		{Type: wire.OpRead, Bin: "a", Value: wire.IntValue(5)},
		{Type: wire.OpRead, Bin: "b", Value: wire.StringValue("x")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var m wire.Message
	if err := m.Decode(msg[wire.ProtoHeaderSize:]); err != nil {
		t.Fatal(err)
	}
	if m.Generation != 7 || m.Expiration != 12345 || len(m.Ops) != 2 || m.ResultCode.Err() != nil {
		t.Fatalf("%+v", m)
	}
	h.ResultCode = wire.ResultGenerationError
	msg, _ = wire.AppendReply(nil, &h, nil)
	if err := m.Decode(msg[wire.ProtoHeaderSize:]); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(m.ResultCode.Err(), wire.ErrGenerationMismatch) {
		t.Fatal("result code lost")
	}
}

// TestDecodeRefusesEveryTruncation: each prefix of a valid body is refused
// with ErrTruncated or ErrMalformed, never accepted or panicking.
func TestDecodeRefusesEveryTruncation(t *testing.T) {
	k, _ := wire.NewKey("test", "demo", "k")
	lv := mustValue(t, []any{"a", int64(1), map[any]any{"x": []byte{1}}})
	h := wire.Header{Info2: wire.Info2Write}
	msg, err := wire.AppendCommand(nil, &h, &k, true, []wire.Op{{Type: wire.OpWrite, Bin: "l", Value: lv}, {Type: wire.OpWrite, Bin: "i", Value: wire.IntValue(3)}})
	if err != nil {
		t.Fatal(err)
	}
	body := msg[wire.ProtoHeaderSize:]
	var m wire.Message
	if err := m.Decode(body); err != nil {
		t.Fatalf("whole body: %v", err)
	}
	for n := range len(body) {
		err := m.Decode(body[:n])
		var de *wire.DecodeError
		if !errors.As(err, &de) || !(errors.Is(err, wire.ErrTruncated) || errors.Is(err, wire.ErrMalformed)) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	// ReadMessage on a truncated stream.
	if _, err := wire.ReadMessage(bytes.NewReader(msg[:len(msg)-1]), nil, 0); !errors.Is(err, wire.ErrTruncated) {
		t.Fatalf("truncated stream: %v", err)
	}
	if _, err := wire.ReadMessage(bytes.NewReader(nil), nil, 0); err != io.EOF {
		t.Fatalf("empty stream: %v", err)
	}
	if _, err := wire.ReadMessage(bytes.NewReader(msg), nil, 10); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("limit: %v", err)
	}
	bad := append([]byte(nil), msg...)
	bad[1] = wire.TypeCompressed
	if _, err := wire.ReadMessage(bytes.NewReader(bad), nil, 0); !errors.Is(err, wire.ErrUnsupported) {
		t.Fatalf("compressed: %v", err)
	}
}

// TestHostileCounts: huge counts in a short body are refused before any
// allocation for them.
func TestHostileCounts(t *testing.T) {
	body := make([]byte, wire.MsgHeaderSize)
	body[0] = wire.MsgHeaderSize
	body[18], body[19], body[20], body[21] = 0xff, 0xff, 0xff, 0xff
	var m wire.Message
	if err := m.Decode(body); !errors.Is(err, wire.ErrTruncated) {
		t.Fatalf("%v", err)
	}
	// A list claiming 2^32-1 elements in 5 bytes.
	if _, _, err := wire.DecodeMsgpack([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}); !errors.Is(err, wire.ErrTruncated) {
		t.Fatalf("list: %v", err)
	}
	// Nesting deeper than MaxDepth.
	deep := bytes.Repeat([]byte{0x91}, wire.MaxDepth+2)
	deep = append(deep, 0)
	if _, _, err := wire.DecodeMsgpack(deep); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("deep: %v", err)
	}
	// A bin value of the wrong size for its particle type.
	h := wire.Header{}
	msg, _ := wire.AppendReply(nil, &h, []wire.Op{{Type: wire.OpRead, Bin: "a", Value: wire.RawValue(wire.ParticleInteger, []byte{1, 2})}})
	if err := m.Decode(msg[wire.ProtoHeaderSize:]); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("short integer: %v", err)
	}
}

// TestOrderedCollections: the extension element the server puts first in
// ordered lists and maps is skipped, as other clients do.
func TestOrderedCollections(t *testing.T) {
	// Key-ordered map {1: "a"}: 2 entries, the first an ext (type 0, flags 1) with nil value.
	b := []byte{0x82, 0xc7, 0x00, 0x01, 0xc0, 0x01, 0xa2, 0x03, 'a'}
	x, n, err := wire.DecodeMsgpack(b)
	if err != nil || n != len(b) {
		t.Fatal(err, n)
	}
	if !reflect.DeepEqual(x, map[any]any{int64(1): "a"}) {
		t.Fatalf("%#v", x)
	}
	// Ordered list [5]: ext first.
	b = []byte{0x92, 0xd4, 0x00, 0x01, 0x05}
	x, _, err = wire.DecodeMsgpack(b)
	if err != nil || !reflect.DeepEqual(x, []any{int64(5)}) {
		t.Fatalf("%#v %v", x, err)
	}
}

// TestEncodeRefusals: bad arguments give ErrInvalid.
func TestEncodeRefusals(t *testing.T) {
	if _, err := wire.ValueOf(struct{}{}); !errors.Is(err, wire.ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := wire.NewKey("", "s", "k"); !errors.Is(err, wire.ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := wire.NewKey("test", "s", 1.5); !errors.Is(err, wire.ErrInvalid) {
		t.Fatal(err)
	}
	k, _ := wire.NewKey("test", "", 1)
	if _, err := wire.AppendCommand(nil, &wire.Header{}, &k, false, []wire.Op{{Type: wire.OpRead, Bin: "0123456789abcdef"}}); !errors.Is(err, wire.ErrInvalid) {
		t.Fatal(err)
	}
}

// TestVoidTime converts TTLs both ways.
func TestVoidTime(t *testing.T) {
	now := time.Unix(wire.CitrusleafEpoch+1000, 0)
	if v := wire.VoidTime(60, now); v != 1060 {
		t.Fatal(v)
	}
	if ttl := wire.VoidTimeTTL(1060, now); ttl != 60 {
		t.Fatal(ttl)
	}
	if wire.VoidTime(wire.TTLNeverExpire, now) != 0 || wire.VoidTimeTTL(0, now) != wire.TTLNeverExpire {
		t.Fatal("never expire")
	}
	if wire.VoidTimeTTL(10, now) != 1 {
		t.Fatal("past void time")
	}
}

// TestMsgpackOddities are inputs the fuzzer found: an extension element on
// its own and a NaN map key are refused with ErrUnsupported.
func TestMsgpackOddities(t *testing.T) {
	if _, _, err := wire.DecodeMsgpack([]byte{0xd4, 0x00, 0x01}); !errors.Is(err, wire.ErrUnsupported) {
		t.Fatalf("lone extension: %v", err)
	}
	nanKey := []byte{0x81, 0xca, 0xff, 0xc0, 0x00, 0x00, 0x01}
	if _, _, err := wire.DecodeMsgpack(nanKey); !errors.Is(err, wire.ErrUnsupported) {
		t.Fatalf("NaN key: %v", err)
	}
	// A NaN value is fine.
	if x, _, err := wire.DecodeMsgpack([]byte{0x91, 0xca, 0xff, 0xc0, 0x00, 0x00}); err != nil || !math.IsNaN(x.([]any)[0].(float64)) {
		t.Fatalf("NaN value: %v %v", x, err)
	}
}
