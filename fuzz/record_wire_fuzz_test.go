package fuzz

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/shmkit/shmkit/record/wire"
)

// officialRequests are message bodies the official Go client (v8.5.0)
// sent to tendtest for key ("test", "demo", "myTestKey"): put of five
// bins (integer, string, list with a string and a blob, map with a float,
// bool), get, get of named bins, exists, touch, add, delete. Recorded
// with `go test ./interop -run TestDumpOfficialRequests -v`.
var officialRequests = []string{
	"1600010000000000000000000000000003e600030005000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a0000000d020100017800000000000004d2000000090203000179616263640000000d021400016c9301a20361a2040200000012021300016d81a2036bcb3ff800000000000000000006021100016201",
	"1603000000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
	"1601000000000000000000000000000003e700030001000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a000000050100000178",
	"1621000000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
	"1600010000000000000000000000000003e700030001000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a000000040b000000",
	"1600010000000000000000000000000003e700030001000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a0000000d05010001780000000000000001",
	"1600030000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
}

// replies are reply bodies as tendtest sent them to the official client
// (which read them), plus a reply carrying a key-ordered map and an
// ordered list as a server stores them.
var replies = []string{
	"160000000000000000010000000000000000000000050000000d010100017800000000000004d2000000090103000179616263640000000d011400016c9301a20361a2040200000012011300016d81a2036bcb3ff800000000000000000006011100016201",
	"160000000000000000010000000000000000000000010000000d010100017800000000000004d2",
	"16000000000000000002000000000000000000000000",
	"16000200000000000000000000000000000000000000",
	"1600000000000000000300000000000000000000000200000010011300016d82c7000100c001a203610000000c011400016c92d4000101",
}

// decodeKinds are the kinds a decoding error may wrap.
var decodeKinds = []error{wire.ErrTruncated, wire.ErrMalformed, wire.ErrTooLarge, wire.ErrUnsupported}

func checkDecodeError(t *testing.T, err error, input []byte) {
	t.Helper()
	var de *wire.DecodeError
	if !errors.As(err, &de) {
		// Accessors report type mismatches with ErrBinTypeMismatch.
		if errors.Is(err, wire.ErrBinTypeMismatch) {
			return
		}
		t.Fatalf("error %T %v is not a *wire.DecodeError", err, err)
	}
	known := false
	for _, k := range decodeKinds {
		known = known || errors.Is(err, k)
	}
	if !known {
		t.Fatalf("error %v wraps no known kind", err)
	}
	if de.Offset < 0 || de.Offset > len(input) {
		t.Fatalf("offset %d outside input of %d bytes", de.Offset, len(input))
	}
}

func addHexSeeds(f *testing.F, seeds []string) {
	for _, s := range seeds {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fuzzMessage is the property shared by the request and reply targets:
// Decode either fails with a typed error or succeeds, and then every value
// converts to a Go value or fails typed, the key fields parse or fail
// typed, and re-encoding gives back the input byte for byte.
func fuzzMessage(t *testing.T, body []byte) {
	var m wire.Message
	if err := m.Decode(body); err != nil {
		checkDecodeError(t, err, body)
		return
	}
	for _, op := range m.Ops {
		if _, err := op.Value.Any(); err != nil {
			checkDecodeError(t, err, op.Value.Encoded())
		}
	}
	if _, err := m.Key(); err != nil {
		checkDecodeError(t, err, body)
	}
	out, err := m.Append(nil)
	if err != nil {
		t.Fatalf("re-encoding a decoded message: %v", err)
	}
	if len(out)-wire.ProtoHeaderSize != len(body) {
		t.Fatalf("re-encoded body of %d bytes, input %d", len(out)-wire.ProtoHeaderSize, len(body))
	}
	body2, err := wire.ReadMessage(bytes.NewReader(out), nil, len(body)+1)
	if err != nil {
		t.Fatalf("ReadMessage of the re-encoded message: %v", err)
	}
	// The encoding is canonical except for each op's version byte, which
	// decoders ignore and encoders write as 0.
	var m2 wire.Message
	if err := m2.Decode(body2); err != nil {
		t.Fatalf("re-encoded message does not decode: %v", err)
	}
	if !sameMessage(&m, &m2) {
		t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
	}
}

func sameMessage(a, b *wire.Message) bool {
	if a.Header != b.Header || len(a.Fields) != len(b.Fields) || len(a.Ops) != len(b.Ops) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Type != b.Fields[i].Type || !bytes.Equal(a.Fields[i].Data, b.Fields[i].Data) {
			return false
		}
	}
	for i := range a.Ops {
		x, y := a.Ops[i], b.Ops[i]
		if x.Type != y.Type || x.Bin != y.Bin || x.Value.Type() != y.Value.Type() || !bytes.Equal(x.Value.Encoded(), y.Value.Encoded()) {
			return false
		}
	}
	return true
}

// FuzzRecordRequest decodes request bodies as tendtest does.
func FuzzRecordRequest(f *testing.F) {
	addHexSeeds(f, officialRequests)
	f.Fuzz(fuzzMessage)
}

// FuzzRecordReply decodes reply bodies as a record client does.
func FuzzRecordReply(f *testing.F) {
	addHexSeeds(f, replies)
	f.Fuzz(fuzzMessage)
}

// FuzzRecordMsgpack decodes a list or map element; what decodes must
// encode and decode again to an equal value.
func FuzzRecordMsgpack(f *testing.F) {
	for _, s := range []string{"9301a20361a20402", "81a2036bcb3ff8000000000000", "82c7000100c001a20361", "92d4000101", "dd00000001c0", "91cf8000000000000000"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, n, err := wire.DecodeMsgpack(b)
		if err != nil {
			checkDecodeError(t, err, b)
			return
		}
		if n < 1 || n > len(b) {
			t.Fatalf("length %d for input of %d bytes", n, len(b))
		}
		enc, err := wire.AppendMsgpack(nil, x)
		if err != nil {
			t.Fatalf("decoded value %#v does not encode: %v", x, err)
		}
		y, m, err := wire.DecodeMsgpack(enc)
		if err != nil || m != len(enc) {
			t.Fatalf("re-encoded value does not decode: %v (%d of %d bytes)", err, m, len(enc))
		}
		if !equalNaN(x, y) {
			t.Fatalf("round trip changed %#v into %#v", x, y)
		}
	})
}

// equalNaN is reflect.DeepEqual with NaN equal to NaN.
func equalNaN(a, b any) bool {
	switch av := a.(type) {
	case float64:
		bv, ok := b.(float64)
		return ok && (av == bv || (math.IsNaN(av) && math.IsNaN(bv)))
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equalNaN(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[any]any:
		bv, ok := b.(map[any]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, v := range av {
			w, ok := bv[k]
			if !ok || !equalNaN(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
