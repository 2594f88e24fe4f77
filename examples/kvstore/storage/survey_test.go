package storage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

// valueIndex is an index that keeps values, not locations (data in the
// index): a record is live if it holds the value the index holds for its
// key, and a dead version is released unplaced (size only).
type valueIndex struct {
	mu sync.Mutex
	m  map[[20]byte]valueEntry
	s  *storage.Storage
	// placeless: releases are not made at all (the negative control).
	placeless bool
}

type valueEntry struct {
	value string
	size  uint32
}

func (ix *valueIndex) put(t *testing.T, key, value string) {
	t.Helper()
	loc := mustAppend(t, ix.s, mkRec(key, value))
	ix.mu.Lock()
	old, ok := ix.m[digestOf(key)]
	ix.m[digestOf(key)] = valueEntry{value, loc.Size}
	ix.mu.Unlock()
	if ok && !ix.placeless {
		if err := ix.s.ReleaseUnplaced(uint64(old.size)); err != nil {
			t.Fatal(err)
		}
	}
}

func (ix *valueIndex) Live(rec *storage.Record, _ storage.Location) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e, ok := ix.m[rec.Digest]
	return ok && e.value == string(rec.Bins)
}

func (ix *valueIndex) Moved(rec *storage.Record, from, _ storage.Location) bool {
	return ix.Live(rec, from)
}

// TestDefragSurveysUnplacedReleases: releases that name no file (an index
// without locations) are counted, survive a clean Close, and make a
// Defrag pass survey the sealed files, after which it removes the dead
// ones: the log stays within a few files under a steady overwrite load,
// and every key still reads back its last value. The negative control
// makes no releases: no survey is due, and the log only grows.
func TestDefragSurveysUnplacedReleases(t *testing.T) {
	const fileSize, keys, rounds = 4 << 10, 30, 60
	run := func(t *testing.T, placeless bool) (maxFiles int, total storage.DefragStats) {
		dir := t.TempDir()
		s := open(t, dir, storage.Options{FileSize: fileSize, DefragThreshold: 0.5})
		ix := &valueIndex{m: map[[20]byte]valueEntry{}, s: s, placeless: placeless}
		want := map[string]string{}
		for round := range rounds {
			for k := range keys {
				key, v := fmt.Sprintf("k%d", k), fmt.Sprintf("v%d-%d", round, k)
				ix.put(t, key, v)
				want[key] = v
			}
			if round == rounds/2 {
				// Close and reopen: the unplaced count is kept.
				u := storage.Unplaced(s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = open(t, dir, storage.Options{FileSize: fileSize, DefragThreshold: 0.5})
				if !s.Clean() || storage.Unplaced(s) != u {
					t.Fatalf("reopened: clean %v, unplaced %d, want clean and %d", s.Clean(), storage.Unplaced(s), u)
				}
				ix.s = s
			}
			st, err := s.Defrag(context.Background(), ix)
			if err != nil {
				t.Fatal(err)
			}
			total.Surveyed += st.Surveyed
			total.Files += st.Files
			total.Copied += st.Copied
			_, n := diskBytes(t, dir)
			maxFiles = max(maxFiles, n)
		}
		got := rebuild(t, s, false, false)
		for key, v := range want {
			if e, ok := got[key]; !ok || e.value != v {
				t.Fatalf("rebuild: %s = %+v, want %q", key, e, v)
			}
		}
		t.Logf("placeless %v: at most %d files; surveyed %d, removed %d, copied %d", placeless, maxFiles, total.Surveyed, total.Files, total.Copied)
		return maxFiles, total
	}
	// 30 live records of about 70 bytes: about half a file; live/threshold
	// is one file, plus the head, the copies' file and the state file.
	const bound = 5
	if n, st := run(t, false); n > bound || st.Surveyed == 0 || st.Files == 0 {
		t.Fatalf("with unplaced releases: at most %d files (want ≤ %d), %d surveyed, %d removed", n, bound, st.Surveyed, st.Files)
	}
	if n, st := run(t, true); n <= bound || st.Surveyed != 0 {
		t.Fatalf("negative control: without releases the log reached only %d files, %d surveyed", n, st.Surveyed)
	}
}
