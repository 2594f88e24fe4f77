package storage_test

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// digestOf is the test's digest of a user key.
func digestOf(key string) [20]byte { return sha1.Sum([]byte(key)) }

func mkRec(key, value string) storage.Record {
	return storage.Record{Namespace: []byte("test"), Set: []byte("demo"), Key: []byte(key),
		Digest: digestOf(key), Generation: 1, LastUpdate: 42, Bins: []byte(value)}
}

func tombRec(key string) storage.Record {
	return storage.Record{Namespace: []byte("test"), Digest: digestOf(key), Tombstone: true}
}

func open(t testing.TB, dir string, opts storage.Options) *storage.Storage {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discard()
	}
	s, err := storage.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *storage.Storage, rec storage.Record) storage.Location {
	t.Helper()
	loc, err := s.Append(rec)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// entry is one digest's state after a rebuild.
type entry struct {
	seq   uint64
	tomb  bool
	key   string
	value string
	loc   storage.Location
}

// rebuild scans s the way a cold index rebuild does: a larger Seq
// supersedes. It returns the live records by key. With logOrder, it lets
// every later record override instead (the wrong rule, for negative
// controls); with ignoreTombstones it skips deletes (likewise).
func rebuild(t testing.TB, s *storage.Storage, logOrder, ignoreTombstones bool) map[string]entry {
	t.Helper()
	idx := map[[20]byte]entry{}
	err := s.Scan(func(rec storage.Record, loc storage.Location) error {
		if rec.Tombstone && ignoreTombstones {
			return nil
		}
		cur, ok := idx[rec.Digest]
		if ok && !logOrder && cur.seq > rec.Seq {
			return nil
		}
		idx[rec.Digest] = entry{seq: rec.Seq, tomb: rec.Tombstone, key: string(rec.Key), value: string(rec.Bins), loc: loc}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for _, e := range idx {
		if !e.tomb {
			out[e.key] = e
		}
	}
	return out
}

// diff compares a rebuilt state with the expected key → value map and
// returns what differs, or nil.
func diff(got map[string]entry, want map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		e, ok := got[k]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("key %q missing (want %q)", k, want[k]))
		case e.value != want[k]:
			errs = append(errs, fmt.Errorf("key %q = %q, want %q", k, e.value, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			errs = append(errs, fmt.Errorf("key %q = %q is back, want it absent", k, got[k].value))
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}

// crashCopy copies the log files of dir into a new directory: what a
// process killed at this instant would leave on disk (no state file, as
// the storage removes it at its first mutation).
func crashCopy(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// headFile returns the path of s's head file.
func headFile(t testing.TB, s *storage.Storage) string {
	t.Helper()
	for _, f := range s.Files() {
		if f.Head {
			return filepath.Join(s.Dir(), fmt.Sprintf("log-%08x.dat", f.ID))
		}
	}
	t.Fatal("no head file")
	return ""
}

// mapIndex is a minimal in-memory index: the server's side of Liveness.
type mapIndex struct {
	mu sync.Mutex
	m  map[[20]byte]storage.Location
	s  *storage.Storage
}

func newMapIndex(s *storage.Storage) *mapIndex {
	return &mapIndex{m: map[[20]byte]storage.Location{}, s: s}
}

// put records loc for d and releases the location it replaces.
func (ix *mapIndex) put(t testing.TB, d [20]byte, loc storage.Location) {
	if err := ix.putErr(d, loc); err != nil {
		t.Fatal(err)
	}
}

func (ix *mapIndex) putErr(d [20]byte, loc storage.Location) error {
	ix.mu.Lock()
	old, ok := ix.m[d]
	ix.m[d] = loc
	ix.mu.Unlock()
	if ok {
		return ix.s.Release(old)
	}
	return nil
}

// del removes d, releasing its location (the index keeps no entry for a
// deleted record).
func (ix *mapIndex) del(t testing.TB, d [20]byte) {
	if err := ix.delErr(d); err != nil {
		t.Fatal(err)
	}
}

func (ix *mapIndex) delErr(d [20]byte) error {
	ix.mu.Lock()
	old, ok := ix.m[d]
	delete(ix.m, d)
	ix.mu.Unlock()
	if ok {
		return ix.s.Release(old)
	}
	return nil
}

func (ix *mapIndex) get(d [20]byte) (storage.Location, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	loc, ok := ix.m[d]
	return loc, ok
}

func (ix *mapIndex) Live(rec *storage.Record, loc storage.Location) bool {
	cur, ok := ix.get(rec.Digest)
	return ok && cur == loc
}

func (ix *mapIndex) Moved(rec *storage.Record, from, to storage.Location) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if cur, ok := ix.m[rec.Digest]; !ok || cur != from {
		return false
	}
	ix.m[rec.Digest] = to
	return true
}

// checkIndex reads every key of want through the index.
func checkIndex(t testing.TB, s *storage.Storage, ix *mapIndex, want map[string]string) {
	t.Helper()
	for k, v := range want {
		loc, ok := ix.get(digestOf(k))
		if !ok {
			t.Fatalf("key %q not in the index", k)
		}
		rec, err := s.Read(loc)
		if err != nil {
			t.Fatalf("key %q at %v: %v", k, loc, err)
		}
		if string(rec.Key) != k || !bytes.Equal(rec.Bins, []byte(v)) {
			t.Fatalf("key %q at %v: got key %q value %q, want %q", k, loc, rec.Key, rec.Bins, v)
		}
	}
}

// diskBytes is the size of every file in dir.
func diskBytes(t testing.TB, dir string) (int64, int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n, len(ents)
}
