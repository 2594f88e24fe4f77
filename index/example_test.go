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
