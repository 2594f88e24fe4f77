package record_test

import (
	"context"
	"testing"

	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/record/wire"
)

// benchClient is a client on a one-node view whose node answers every
// record message with the canned reply, allocating nothing: the
// benchmarks measure the client's own cost (CPU beside the loopback round
// trip, and allocations).
func benchClient(b *testing.B, reply []byte) (*record.Client, record.Key) {
	h, c := hostileClient(b)
	h.setReply(writeReply(reply))
	b.Cleanup(func() { c.Close() })
	return c, mustKey(b, "bench")
}

// BenchmarkGet reads a record of an integer and an 8-byte string bin.
func BenchmarkGet(b *testing.B) {
	c, k := benchClient(b, reply(b, wire.ResultOK,
		wire.Op{Type: wire.OpRead, Bin: "v", Value: wire.IntValue(123456)},
		wire.Op{Type: wire.OpRead, Bin: "s", Value: wire.StringValue("abcdefgh")}))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, nil, k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut writes the same record.
func BenchmarkPut(b *testing.B) {
	c, k := benchClient(b, reply(b, wire.ResultOK))
	ctx := context.Background()
	bins := record.BinMap{"v": 123456, "s": "abcdefgh"}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Put(ctx, nil, k, bins); err != nil {
			b.Fatal(err)
		}
	}
}
