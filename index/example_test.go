package index_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/shmkit/shmkit/index"
)

// A record server opens its index at start-up with a function that
// rebuilds it from storage (called only on a cold start), writes and
// reads it, and closes it cleanly with the storage's identity, so that
// the next start is warm.
func Example() {
	dir, err := os.MkdirTemp("", "index-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	storage := index.StorageID{UUID: [16]byte{0x42}, Committed: 0}
	cfg := index.Config{Store: index.Dir(dir), Sprigs: 16, StageEntries: 1 << 10, Storage: storage, Logger: quiet}

	rebuild := func(ctx context.Context, ix *index.Index) error {
		return nil // a real server scans its log here and calls ix.Put
	}
	ix, info, err := index.Open(context.Background(), cfg, rebuild)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Mode, "start:", info.Reason.Kind)

	d := index.Digest{0x01, 0x02, 0x03}
	if err := ix.Put(index.Record{Digest: d, Generation: 1, FileID: 2, Offset: 4096, Size: 512}); err != nil {
		fmt.Println(err)
		return
	}
	rec, found, err := ix.Get(d)
	fmt.Println(found, err, rec.FileID, rec.Offset, rec.Size, "partition", d.Partition())

	storage.Committed = 512 // what the storage holds now
	if err := ix.CloseClean(storage); err != nil {
		fmt.Println(err)
		return
	}
	cfg.Storage = storage
	ix, info, err = index.Open(context.Background(), cfg, rebuild)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ix.Close()
	fmt.Println(info.Mode, "start with", info.Records, "record")
	// Output:
	// cold start: segments missing
	// true <nil> 2 4096 512 partition 513
	// warm start with 1 record
}

// A cold rebuild gives every storage record to one Builder, in any order,
// with the storage's sequence number as the order key (the largest wins),
// a Delete for every delete marker, and releases the records that lost.
func ExampleBuilder() {
	dir, err := os.MkdirTemp("", "index-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	cfg := index.Config{Store: index.Dir(dir), Sprigs: 16, StageEntries: 1 << 10, Logger: slog.New(slog.DiscardHandler)}

	// What a log scan yields: (seq, record) or (seq, delete of a digest).
	a, b := index.Digest{0x01, 0x02}, index.Digest{0x03, 0x04}
	type logRecord struct {
		seq    uint64
		delete bool
		rec    index.Record
	}
	log := []logRecord{
		{seq: 1, rec: index.Record{Digest: a, Generation: 1, Offset: 100, Size: 10}},
		{seq: 2, rec: index.Record{Digest: b, Generation: 1, Offset: 200, Size: 20}},
		{seq: 3, rec: index.Record{Digest: a, Generation: 2, Offset: 300, Size: 10}},
		{seq: 4, delete: true, rec: index.Record{Digest: b}},
		{seq: 1, rec: index.Record{Digest: a, Generation: 1, Offset: 400, Size: 10}}, // a defragmenter's late copy
	}
	rebuild := func(ctx context.Context, ix *index.Index) error {
		bl, err := ix.NewBuilder(index.BuildOptions{
			SizeHint:   len(log),
			Superseded: func(r index.Record) { fmt.Println("release offset", r.Offset) },
		})
		if err != nil {
			return err
		}
		for _, r := range log {
			if r.delete {
				err = bl.Delete(r.seq, r.rec.Digest)
			} else {
				err = bl.Add(r.seq, r.rec)
			}
			if err != nil {
				return err
			}
		}
		st, err := bl.Finish(ctx)
		fmt.Printf("%d given, %d entries, %d superseded, %d deleted\n", st.Given, st.Entries, st.Superseded, st.Deleted)
		return err
	}
	ix, _, err := index.Open(context.Background(), cfg, rebuild)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ix.Close()
	rec, found, _ := ix.Get(a)
	fmt.Println("a:", found, rec.Generation, rec.Offset)
	_, found, _ = ix.Get(b)
	fmt.Println("b:", found)
	// Unordered output:
	// release offset 100
	// release offset 400
	// release offset 200
	// 5 given, 1 entries, 3 superseded, 1 deleted
	// a: true 2 300
	// b: false
}
