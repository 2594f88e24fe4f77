package wire_test

import (
	"testing"

	"github.com/shmkit/shmkit/record/wire"
)

// BenchmarkAppendCommandGet encodes a get of all bins into a reused
// buffer: what a client does per Get.
func BenchmarkAppendCommandGet(b *testing.B) {
	k, _ := wire.NewKey("test", "demo", "myTestKey")
	h := wire.Header{Info1: wire.Info1Read | wire.Info1GetAll, Timeout: 1000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = wire.AppendCommand(buf[:0], &h, &k, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendCommandPut encodes a put of an integer and a string bin.
func BenchmarkAppendCommandPut(b *testing.B) {
	k, _ := wire.NewKey("test", "demo", "myTestKey")
	h := wire.Header{Info2: wire.Info2Write}
	ops := []wire.Op{{Type: wire.OpWrite, Bin: "x", Value: wire.IntValue(1234)}, {Type: wire.OpWrite, Bin: "y", Value: wire.StringValue("abcd")}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = wire.AppendCommand(buf[:0], &h, &k, false, ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeReply decodes a reply of two bins into a reused Message
// (bin names longer than one byte would be its only allocations).
func BenchmarkDecodeReply(b *testing.B) {
	msg, _ := wire.AppendReply(nil, &wire.Header{Generation: 1}, []wire.Op{
		{Type: wire.OpRead, Bin: "x", Value: wire.IntValue(1234)},
		{Type: wire.OpRead, Bin: "y", Value: wire.StringValue("abcd")},
	})
	body := msg[wire.ProtoHeaderSize:]
	var m wire.Message
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListAny decodes a ten-element list bin to Go values.
func BenchmarkListAny(b *testing.B) {
	v, _ := wire.ValueOf([]any{1, 2, 3, "a", "b", "c", 1.5, true, []byte{1}, nil})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.AsList(); err != nil {
			b.Fatal(err)
		}
	}
}
