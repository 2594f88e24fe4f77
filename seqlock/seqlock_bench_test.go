package seqlock_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/seqlock"
)

// benchSink keeps benchmark loops from being optimized away.
var benchSink uint64

// benchTable returns a table of 16 records of words words on a SysV
// segment, every record written once.
func benchTable(b *testing.B, words int) (segArgs, *seqlock.Table) {
	b.Helper()
	a, seg := newSysV(b, 16, words)
	tab, _, err := a.table(seg, seqlock.Options{})
	if err != nil {
		b.Fatal(err)
	}
	src := make([]uint64, words)
	for i := range 16 {
		encode(src, 1)
		if err := tab.Write(i, src); err != nil {
			b.Fatal(err)
		}
	}
	return a, tab
}

// BenchmarkRead64 reads a 64-byte record of a SysV segment, uncontended.
func BenchmarkRead64(b *testing.B) {
	_, tab := benchTable(b, 8)
	dst := make([]uint64, 8)
	b.SetBytes(64)
	for b.Loop() {
		if err := tab.Read(3, dst); err != nil {
			b.Fatal(err)
		}
	}
	benchSink += dst[0]
}

// BenchmarkBaselineCopy64 is a plain 64-byte copy (the floor).
func BenchmarkBaselineCopy64(b *testing.B) {
	src, dst := make([]uint64, 8), make([]uint64, 8)
	encode(src, 1)
	b.SetBytes(64)
	for b.Loop() {
		copy(dst, src)
	}
	benchSink += dst[0]
}

// BenchmarkBaselineRWMutexCopy64 is a 64-byte copy under a read lock, the
// in-process alternative to a seqlock.
func BenchmarkBaselineRWMutexCopy64(b *testing.B) {
	var mu sync.RWMutex
	src, dst := make([]uint64, 8), make([]uint64, 8)
	encode(src, 1)
	b.SetBytes(64)
	for b.Loop() {
		mu.RLock()
		copy(dst, src)
		mu.RUnlock()
	}
	benchSink += dst[0]
}

// BenchmarkWrite64 writes a 64-byte record, uncontended.
func BenchmarkWrite64(b *testing.B) {
	_, tab := benchTable(b, 8)
	src := make([]uint64, 8)
	b.SetBytes(64)
	for b.Loop() {
		src[0]++
		if err := tab.Write(3, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot16x64 snapshots 16 records of 64 bytes, uncontended.
func BenchmarkSnapshot16x64(b *testing.B) {
	_, tab := benchTable(b, 8)
	rows := make([][]uint64, 16)
	for i := range rows {
		rows[i] = make([]uint64, 8)
	}
	b.SetBytes(16 * 64)
	for b.Loop() {
		if err := tab.Snapshot(rows); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadContended64 reads a 64-byte record that a writer in another
// process writes continuously, and reports the share of reads that
// overlapped a write and the torn copies (always 0).
func BenchmarkReadContended64(b *testing.B) {
	a, tab := benchTable(b, 8)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	seg, _, ctl, err := a.attach(ctx, seqlock.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer seg.Close()
	// The writer writes record 0 only, continuously.
	g, err := harness.Start(ctx, harness.Spec{Workload: "writer", N: 1, Args: writerArgs{segArgs: a, Mode: modeLoop, Start: 1, Hot: 1}})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		b.Fatal(err)
	}
	dst := make([]uint64, 8)
	var torn uint64
	before := tab.Stats()
	b.SetBytes(64)
	b.ResetTimer()
	for b.Loop() {
		if err := tab.Read(0, dst); err != nil {
			b.Fatal(err)
		}
		if _, ok := decode(dst); !ok {
			torn++
		}
	}
	b.StopTimer()
	after := tab.Stats()
	b.ReportMetric(float64(after.OverlappedReads-before.OverlappedReads)/float64(b.N), "overlapped/op")
	b.ReportMetric(float64(torn), "torn")
	seg.Store64(ctl+ctlStop, 1)
	if _, err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if torn != 0 {
		b.Fatalf("%d torn reads", torn)
	}
}

// TestBenchSeqlockRead runs the shmbench seqlock benchmark briefly.
func TestBenchSeqlockRead(t *testing.T) {
	res, err := bench.SeqlockRead(context.Background(), bench.SeqlockConfig{
		Iterations: 100_000, Rounds: 1, Duration: 300 * time.Millisecond, Readers: 2})
	for _, r := range res {
		t.Log(r)
	}
	if err != nil {
		t.Fatal(err)
	}
	var sawTorn, sawOverlap bool
	for _, r := range res {
		if strings.HasSuffix(r.Metric, "torn records") {
			sawTorn = true
			if r.Value != 0 {
				t.Errorf("%v", r)
			}
		}
		if strings.HasSuffix(r.Metric, "reads that overlapped a write") {
			sawOverlap = true
		}
	}
	if !sawTorn || !sawOverlap {
		t.Errorf("results lack the torn or overlap figures: %v", res)
	}
}
