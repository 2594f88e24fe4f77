package storage_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

// loadSmall bulk-loads n small records (about 90-byte frames: namespace,
// set, a key of up to 10 bytes, 16 bytes of JSON bins) into s.
func loadSmall(b *testing.B, s *storage.Storage, n int) {
	key := make([]byte, 0, 16)
	bins := make([]byte, 0, 32)
	err := s.BulkLoad(n, func(i int, rec *storage.Record) error {
		key = fmt.Appendf(key[:0], "k%d", i)
		bins = fmt.Appendf(bins[:0], `{"v":%9d}`, i)
		rec.Namespace, rec.Set, rec.Key, rec.Bins = []byte("test"), []byte("demo"), key, bins
		binary.LittleEndian.PutUint64(rec.Digest[:], uint64(i)*0x9e3779b97f4a7c15)
		binary.LittleEndian.PutUint64(rec.Digest[8:], uint64(i))
		rec.Generation, rec.LastUpdate = 1, uint64(i)
		return nil
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkScan scans a page-cached log of 1M small records, as a cold
// rebuild does (the callback touches each record's digest, Seq and
// location): records/s is the figure the 2M records/s floor for
// the kvstore's cold rebuild is about.
//
//	go test ./examples/kvstore/storage -run '^$' -bench Scan -benchtime 10x
func BenchmarkScan(b *testing.B) {
	const n = 1_000_000
	s := open(b, b.TempDir(), storage.Options{})
	loadSmall(b, s, n)
	var sink uint64
	scan := func() {
		count := 0
		err := s.Scan(func(rec storage.Record, loc storage.Location) error {
			sink += uint64(rec.Digest[0]) + rec.Seq + loc.Offset
			count++
			return nil
		})
		if err != nil || count != n {
			b.Fatalf("scan: %d records, %v", count, err)
		}
	}
	scan() // page the log in
	for b.Loop() {
		scan()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/float64(b.N), "ns/record")
	b.ReportMetric(0, "ns/op")
	_ = sink
}

// BenchmarkAppend appends small records one at a time (default sync
// policy: one write(2) each).
func BenchmarkAppend(b *testing.B) {
	s := open(b, b.TempDir(), storage.Options{})
	rec := mkRec("key", `{"v":123456789}`)
	for b.Loop() {
		if _, err := s.Append(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBulkLoad writes 1M small records with BulkLoad.
func BenchmarkBulkLoad(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		b.StopTimer()
		s := open(b, b.TempDir(), storage.Options{})
		b.StartTimer()
		loadSmall(b, s, n)
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkOpenClean opens a cleanly closed log of 1M records in 8 MiB
// files (a dozen files): the storage's share of a warm restart, which
// reads no record.
func BenchmarkOpenClean(b *testing.B) {
	dir := b.TempDir()
	s := open(b, dir, storage.Options{FileSize: 8 << 20})
	loadSmall(b, s, 1_000_000)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, err := storage.Open(dir, storage.Options{Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
		if !s.Clean() {
			b.Fatal("not clean")
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkAppendSyncEveryWrite appends with an fdatasync per
// acknowledgement from 8 goroutines, which share fdatasyncs (group
// commit); the figure depends on the disk.
func BenchmarkAppendSyncEveryWrite(b *testing.B) {
	s := open(b, b.TempDir(), storage.Options{SyncEveryWrite: true})
	rec := mkRec("key", `{"v":123456789}`)
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
