package record_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
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

// BenchmarkGetPreferRack is BenchmarkGet under PREFER_RACK, which reads
// the namespace's replication factor and consistency (cached per map
// generation) and the nodes' racks on every attempt.
func BenchmarkGetPreferRack(b *testing.B) {
	c, k := benchClient(b, reply(b, wire.ResultOK,
		wire.Op{Type: wire.OpRead, Bin: "v", Value: wire.IntValue(123456)},
		wire.Op{Type: wire.OpRead, Bin: "s", Value: wire.StringValue("abcdefgh")}))
	ctx := context.Background()
	p := record.NewPolicy()
	p.ReplicaPolicy = record.PREFER_RACK
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, p, k); err != nil {
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

// BenchmarkGetTLS reads a record from a one-node simulated cluster in
// clear text and over TLS (with authentication, which only costs at
// connection setup): the same server work, so the difference is TLS's
// cost per command. Parallel, as a process's goroutines share the pool.
// Besides ns/op (wall clock, inflated by other load on the machine) it
// reports cpu-ns/op: the process's user+system CPU time per read, client
// and in-process server together (both ends' TLS included).
func BenchmarkGetTLS(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts tendtest.Options
	}{
		{"plain", tendtest.Options{}},
		{"tls", tendtest.Options{TLS: &tendtest.TLSOptions{}}},
		{"tls+auth", tendtest.Options{TLS: &tendtest.TLSOptions{}, Users: map[string]string{"app": "pw"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sim := secureSim(b, 1, tc.opts)
			cfg := tend.Config{Seeds: sim.Seeds()}
			if tc.opts.TLS != nil {
				cfg = tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(b, sim, "")}
			}
			if tc.opts.Users != nil {
				cfg.User, cfg.Password = "app", "pw"
			}
			c, err := record.NewClient(openConfig(b, cfg, "test"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			k := mustKey(b, "bench")
			ctx := context.Background()
			if err := c.Put(ctx, nil, k, record.BinMap{"v": 123456, "s": "abcdefgh"}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Get(ctx, nil, k); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
