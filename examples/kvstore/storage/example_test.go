package storage_test

import (
	"crypto/sha1"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

// A server appends records, keeps their locations in its index, reads
// them back, writes a tombstone on delete, and rebuilds its index from a
// Scan after an unclean stop.
func Example() {
	dir, err := os.MkdirTemp("", "kvstore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	s, err := storage.Open(dir, storage.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	put := func(key, bins string) storage.Location {
		loc, err := s.Append(storage.Record{Namespace: []byte("test"), Set: []byte("demo"), Key: []byte(key),
			Digest: sha1.Sum([]byte(key)), Generation: 1, Bins: []byte(bins)})
		if err != nil {
			panic(err)
		}
		return loc
	}
	a := put("alice", `{"age":30}`)
	put("bob", `{"age":40}`)
	// Deleting bob: a tombstone, so that a cold rebuild does not bring him back.
	if _, err := s.Append(storage.Record{Namespace: []byte("test"), Digest: sha1.Sum([]byte("bob")), Tombstone: true}); err != nil {
		panic(err)
	}

	rec, err := s.Read(a)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %s\n", rec.Key, rec.Bins)

	// A cold rebuild: the larger Seq supersedes; tombstones delete.
	type entry struct {
		seq  uint64
		tomb bool
		key  string
	}
	index := map[[20]byte]entry{}
	err = s.Scan(func(rec storage.Record, loc storage.Location) error {
		if cur, ok := index[rec.Digest]; !ok || rec.Seq > cur.seq {
			index[rec.Digest] = entry{rec.Seq, rec.Tombstone, string(rec.Key)} // string() copies
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	for _, e := range index {
		if !e.tomb {
			fmt.Println("live:", e.key)
		}
	}
	fmt.Println("next seq:", s.Identity().NextSeq)
	// Output:
	// alice: {"age":30}
	// live: alice
	// next seq: 4
}
