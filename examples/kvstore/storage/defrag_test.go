package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

const smallFile = 16 << 10

// overwriteRounds overwrites keys keys rounds times through ix, calling
// after (if not nil) after each round, and returns the final model.
func overwriteRounds(t *testing.T, s *storage.Storage, ix *mapIndex, keys, rounds int, after func(round int)) map[string]string {
	want := map[string]string{}
	for r := range rounds {
		for k := range keys {
			key, val := fmt.Sprint("key", k), fmt.Sprintf(`{"round":%d,"pad":"%s"}`, r, strings.Repeat("p", 40))
			ix.put(t, digestOf(key), mustAppend(t, s, mkRec(key, val)))
			want[key] = val
		}
		if after != nil {
			after(r)
		}
	}
	return want
}

func liveBytes(ix *mapIndex) int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var n int64
	for _, l := range ix.m {
		n += int64(l.Size)
	}
	return n
}

// TestDefragBoundedDisk overwrites 200 keys 40 times with a Defrag pass
// after each round: the bytes on disk stay under live/threshold plus
// three files, every key reads its last value through the index, and a
// cold rebuild finds exactly the model. Without Defrag (the negative
// control) the same load exceeds the bound many times over.
func TestDefragBoundedDisk(t *testing.T) {
	const keys, rounds = 200, 40
	run := func(t *testing.T, defrag bool) (maxDisk, bound int64) {
		dir := t.TempDir()
		s := open(t, dir, storage.Options{FileSize: smallFile})
		ix := newMapIndex(s)
		var total storage.DefragStats
		want := overwriteRounds(t, s, ix, keys, rounds, func(r int) {
			if defrag {
				st, err := s.Defrag(context.Background(), ix)
				if err != nil {
					t.Fatal(err)
				}
				total.Files += st.Files
				total.Copied += st.Copied
			}
			disk, _ := diskBytes(t, dir)
			maxDisk = max(maxDisk, disk)
			bound = max(bound, int64(float64(liveBytes(ix))/storage.DefaultDefragThreshold)+3*smallFile)
			if defrag && disk > bound {
				t.Fatalf("round %d: %d bytes on disk (%d files), bound %d", r, disk, len(s.Files()), bound)
			}
		})
		checkIndex(t, s, ix, want)
		if err := diff(rebuild(t, open(t, crashCopy(t, dir), storage.Options{}), false, false), want); err != nil {
			t.Fatal(err)
		}
		if defrag {
			t.Logf("%d files defragmented, %d records copied; peak %d bytes on disk, bound %d", total.Files, total.Copied, maxDisk, bound)
			if total.Files == 0 || total.Copied == 0 {
				t.Fatal("Defrag did nothing")
			}
			// The accounting survives a clean close.
			before := s.Files()
			s.Close()
			s2 := open(t, dir, storage.Options{})
			if fmt.Sprint(s2.Files()) != fmt.Sprint(before) || !s2.Clean() {
				t.Fatalf("accounting after reopen %v, before %v", s2.Files(), before)
			}
		}
		return maxDisk, bound
	}
	run(t, true)
	t.Run("negative control: no defrag", func(t *testing.T) {
		disk, bound := run(t, false)
		if disk <= bound {
			t.Fatalf("without Defrag %d bytes on disk, within the bound %d: the test cannot fail", disk, bound)
		}
	})
}

// TestDefragConcurrent runs the defragmenter in the background while
// writers overwrite and readers read through the index (retrying a
// location the defragmenter removed), then checks contents and the bound.
func TestDefragConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: smallFile})
	ix := newMapIndex(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunDefrag(ctx, ix, time.Millisecond) }()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // reader
		for {
			select {
			case <-stop:
				return
			default:
			}
			for k := range 100 {
				d := digestOf(fmt.Sprint("key", k))
				for try := 0; ; try++ {
					loc, ok := ix.get(d)
					if !ok {
						break
					}
					rec, err := s.Read(loc)
					if errors.Is(err, storage.ErrNotFound) && try < 100 {
						continue // moved and removed: look it up again
					}
					if err != nil {
						t.Error(err)
						return
					}
					if rec.Digest != d {
						t.Errorf("read another key's record at %v", loc)
						return
					}
					break
				}
			}
		}
	})
	want := overwriteRounds(t, s, ix, 100, 60, nil)
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := s.Defrag(context.Background(), ix); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s, ix, want)
	disk, _ := diskBytes(t, dir)
	if bound := int64(float64(liveBytes(ix))/storage.DefaultDefragThreshold) + 3*smallFile; disk > bound {
		t.Fatalf("%d bytes on disk, bound %d", disk, bound)
	}
	if err := diff(rebuild(t, open(t, crashCopy(t, dir), storage.Options{}), false, false), want); err != nil {
		t.Fatal(err)
	}
}

// tombstoneScenario writes key "victim" into a file that stays mostly
// live, deletes it with a tombstone in a file that becomes mostly dead,
// and runs Defrag: the tombstone must survive (the older file still
// holds the victim). It returns the storage's directory and the stats.
func tombstoneScenario(t *testing.T, unsafe bool) (string, storage.DefragStats) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	if unsafe {
		storage.UnsafeDropTombstones(s)
	}
	ix := newMapIndex(s)
	v := mkRec("victim", "doomed")
	ix.put(t, v.Digest, mustAppend(t, s, v))
	for i := range 20 { // keep the victim's file live
		r := mkRec(fmt.Sprint("keep", i), strings.Repeat("k", 100))
		ix.put(t, r.Digest, mustAppend(t, s, r))
	}
	start := s.Identity().File
	for s.Identity().File == start { // fill with dead records
		r := mkRec("churn", strings.Repeat("c", 100))
		ix.put(t, r.Digest, mustAppend(t, s, r))
	}
	mustAppend(t, s, tombRec("victim"))
	ix.del(t, v.Digest)
	tombFile := s.Identity().File
	for s.Identity().File == tombFile {
		r := mkRec("churn", strings.Repeat("c", 100))
		ix.put(t, r.Digest, mustAppend(t, s, r))
	}
	st, err := s.Defrag(context.Background(), ix)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, st
}

func TestDefragKeepsShadowingTombstone(t *testing.T) {
	dir, st := tombstoneScenario(t, false)
	if st.TombstonesKept != 1 || st.Files == 0 {
		t.Fatalf("stats %+v, want the tombstone kept", st)
	}
	s := open(t, dir, storage.Options{})
	if e, ok := rebuild(t, s, false, false)["victim"]; ok {
		t.Fatalf("deleted record is back: %+v", e)
	}
	t.Run("negative control: tombstones dropped regardless", func(t *testing.T) {
		dir, st := tombstoneScenario(t, true)
		if st.TombstonesDropped != 1 {
			t.Fatalf("stats %+v", st)
		}
		s := open(t, dir, storage.Options{})
		if _, ok := rebuild(t, s, false, false)["victim"]; !ok {
			t.Fatal("dropping the shadowing tombstone did not resurrect the victim: the check cannot fail")
		}
	})
}

// TestDefragDropsTombstones deletes every fourth key of a file that stays
// live, so the tombstones must first be kept; then it overwrites the other
// keys until that file is defragmented, after which every tombstone is
// dropped. No deleted key ever comes back.
func TestDefragDropsTombstones(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	ix := newMapIndex(s)
	want := map[string]string{}
	for k := range 60 {
		r := mkRec(fmt.Sprint("key", k), "first")
		ix.put(t, r.Digest, mustAppend(t, s, r))
		want[string(r.Key)] = "first"
	}
	deleted := 0
	for k := 0; k < 60; k += 4 {
		key := fmt.Sprint("key", k)
		mustAppend(t, s, tombRec(key))
		ix.del(t, digestOf(key))
		delete(want, key)
		deleted++
	}
	countTombs := func() int {
		n := 0
		if err := s.Scan(func(rec storage.Record, _ storage.Location) error {
			if rec.Tombstone {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var total storage.DefragStats
	for round := 0; round < 60; round++ {
		if round < 10 { // churn: the deleted keys' file stays live
			for range 40 {
				r := mkRec("churn", strings.Repeat("c", 60))
				ix.put(t, r.Digest, mustAppend(t, s, r))
				want["churn"] = string(r.Bins)
			}
		} else {
			for key := range want {
				val := fmt.Sprint("round", round)
				ix.put(t, digestOf(key), mustAppend(t, s, mkRec(key, val)))
				want[key] = val
			}
		}
		st, err := s.Defrag(context.Background(), ix)
		if err != nil {
			t.Fatal(err)
		}
		total.TombstonesKept += st.TombstonesKept
		total.TombstonesDropped += st.TombstonesDropped
		// Tombstones whose key's old version shares their own file may go
		// at once; those shadowing the first file, still live, may not.
		if round == 9 && (total.TombstonesKept == 0 || total.TombstonesDropped > deleted/2) {
			t.Fatalf("after the churn: kept %d, dropped %d of %d; want most kept", total.TombstonesKept, total.TombstonesDropped, deleted)
		}
		if err := diff(rebuild(t, open(t, crashCopy(t, dir), storage.Options{}), false, false), want); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if round >= 10 && countTombs() == 0 {
			break
		}
	}
	t.Logf("tombstones kept %d times, dropped %d", total.TombstonesKept, total.TombstonesDropped)
	if left := countTombs(); total.TombstonesDropped != deleted || left != 0 {
		t.Fatalf("dropped %d, %d left: want all %d dropped in the end", total.TombstonesDropped, left, deleted)
	}
}

// racingIndex simulates a server that rewrites a key while the
// defragmenter copies it: its Live appends a newer version (the server's
// log append) before answering, and the server's index update lands
// after Moved.
type racingIndex struct {
	*mapIndex
	t      *testing.T
	victim [20]byte
	newer  storage.Location
}

func (r *racingIndex) Live(rec *storage.Record, loc storage.Location) bool {
	live := r.mapIndex.Live(rec, loc)
	if live && rec.Digest == r.victim && r.newer == (storage.Location{}) {
		r.newer = mustAppend(r.t, r.s, mkRec("victim", "newer"))
	}
	return live
}

func (r *racingIndex) Moved(rec *storage.Record, from, to storage.Location) bool {
	ok := r.mapIndex.Moved(rec, from, to)
	if rec.Digest == r.victim && r.newer != (storage.Location{}) {
		r.mapIndex.put(r.t, rec.Digest, r.newer) // the server's write completes
	}
	return ok
}

// TestDefragCopyAfterNewerVersion: the defragmenter's copy of a record
// lands after a newer version of it; the index ends on the newer one and
// a rebuild by Seq keeps it, while a rebuild in plain log order (the
// negative control) would bring the old version back.
func TestDefragCopyAfterNewerVersion(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	ri := &racingIndex{mapIndex: newMapIndex(s), t: t, victim: digestOf("victim")}
	v := mkRec("victim", "older")
	ri.put(t, v.Digest, mustAppend(t, s, v))
	start := s.Identity().File
	for s.Identity().File == start {
		r := mkRec("churn", strings.Repeat("c", 100))
		ri.put(t, r.Digest, mustAppend(t, s, r))
	}
	st, err := s.Defrag(context.Background(), ri)
	if err != nil {
		t.Fatal(err)
	}
	if ri.newer == (storage.Location{}) || st.Copied == 0 {
		t.Fatalf("the race did not happen: %+v", st)
	}
	checkIndex(t, s, ri.mapIndex, map[string]string{"victim": "newer"})
	c := open(t, crashCopy(t, dir), storage.Options{})
	if got := rebuild(t, c, false, false)["victim"].value; got != "newer" {
		t.Fatalf("rebuild by Seq: victim = %q, want newer", got)
	}
	if got := rebuild(t, c, true, false)["victim"].value; got != "older" {
		t.Fatalf("rebuild in log order: victim = %q; the copy does not lie after the newer version, the test cannot fail", got)
	}
}

func TestBulkLoad(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 64 << 10})
	const n = 20000
	locs := make([]storage.Location, n)
	key := make([]byte, 0, 16)
	err := s.BulkLoad(n, func(i int, rec *storage.Record) error {
		key = fmt.Appendf(key[:0], "bulk%d", i)
		*rec = storage.Record{Namespace: []byte("test"), Key: key, Digest: digestOf(string(key)), Bins: key,
			Tombstone: i%1000 == 999}
		return nil
	}, func(i int, loc storage.Location) { locs[i] = loc })
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Identity().NextSeq; got != n+1 {
		t.Fatalf("next seq %d, want %d", got, n+1)
	}
	for _, i := range []int{0, 1, 4095, n / 2, n - 1} {
		rec, err := s.Read(locs[i])
		if err != nil || string(rec.Key) != fmt.Sprint("bulk", i) || rec.Seq != uint64(i+1) {
			t.Fatalf("record %d at %v: %q seq %d, %v", i, locs[i], rec.Key, rec.Seq, err)
		}
	}
	got := rebuild(t, open(t, crashCopy(t, dir), storage.Options{}), false, false)
	if len(got) != n-n/1000 {
		t.Fatalf("rebuild found %d records, want %d", len(got), n-n/1000)
	}
	mustAppend(t, s, mkRec("after", "bulk"))
}

// TestFileIDReuse limits the storage to 6 file ids: without Defrag the
// log fills up with ErrLogFull; with it, ids are reused many times over,
// and because log order is creation order, not id order, Scan and a cold
// rebuild stay right.
func TestFileIDReuse(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	storage.LimitFileIDs(s, 8)
	ix := newMapIndex(s)
	wrapped := 0
	var model map[string]string
	model = overwriteRounds(t, s, ix, 40, 100, func(round int) {
		if _, err := s.Defrag(context.Background(), ix); err != nil {
			t.Fatal(err)
		}
		files := s.Files()
		for i := 1; i < len(files); i++ {
			if files[i].ID < files[i-1].ID {
				wrapped++
				if wrapped == 1 {
					t.Logf("round %d: files in log order %v", round, files)
					want := map[string]string{}
					for k := range 40 {
						want[fmt.Sprint("key", k)] = fmt.Sprintf(`{"round":%d,"pad":"%s"}`, round, strings.Repeat("p", 40))
					}
					checkIndex(t, s, ix, want)
					if err := diff(rebuild(t, open(t, crashCopy(t, dir), storage.Options{}), false, false), want); err != nil {
						t.Fatal(err)
					}
				}
				break
			}
		}
	})
	if wrapped == 0 {
		t.Fatal("file ids never wrapped around: the test checks nothing")
	}
	checkIndex(t, s, ix, model)
	var prev uint64
	if err := s.Scan(func(rec storage.Record, _ storage.Location) error {
		if !rec.Copied && rec.Seq < prev {
			return fmt.Errorf("seq %d after %d: files out of order", rec.Seq, prev)
		}
		if !rec.Copied {
			prev = rec.Seq
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	full := open(t, t.TempDir(), storage.Options{FileSize: 4 << 10})
	storage.LimitFileIDs(full, 6)
	for i := 0; ; i++ {
		_, err := full.Append(mkRec(fmt.Sprint(i), strings.Repeat("x", 100)))
		if errors.Is(err, storage.ErrLogFull) {
			if n := len(full.Files()); n != 6 {
				t.Fatalf("log full with %d files, want 6", n)
			}
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("append %d: %v, want ErrLogFull after 6 files", i, err)
		}
	}
}

// TestAccountingRebuiltByScan: after an unclean stop every byte counts as
// live; a Scan plus the Release calls of the rebuild give back, file by
// file, the accounting the running storage had.
func TestAccountingRebuiltByScan(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	ix := newMapIndex(s)
	overwriteRounds(t, s, ix, 30, 5, nil)
	for k := range 10 {
		key := fmt.Sprint("key", k)
		mustAppend(t, s, tombRec(key))
		ix.del(t, digestOf(key))
	}
	before := s.Files()
	c := open(t, crashCopy(t, dir), storage.Options{})
	for _, f := range c.Files() {
		if f.Dead != 0 {
			t.Fatalf("after an unclean stop, file %d has %d dead bytes before any Scan", f.ID, f.Dead)
		}
	}
	idx := map[[20]byte]struct {
		seq uint64
		loc storage.Location
	}{}
	if err := c.Scan(func(rec storage.Record, loc storage.Location) error {
		cur, ok := idx[rec.Digest]
		if ok && cur.seq > rec.Seq {
			return c.Release(loc)
		}
		if ok {
			if err := c.Release(cur.loc); err != nil {
				return err
			}
		}
		if rec.Tombstone {
			delete(idx, rec.Digest)
		} else {
			idx[rec.Digest] = struct {
				seq uint64
				loc storage.Location
			}{rec.Seq, loc}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := c.Files(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("accounting after Scan:\n%v\nrunning storage had\n%v", got, before)
	}
}

// TestDefragKeepsCleanUntilItChanges: after a clean reopen, a Defrag pass
// with nothing to do leaves the storage clean (a crash now reopens
// clean); the first Release invalidates it.
func TestDefragKeepsCleanUntilItChanges(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	ix := newMapIndex(s)
	overwriteRounds(t, s, ix, 80, 1, nil)
	if len(s.Files()) < 2 {
		t.Fatal("one file only: make more keys")
	}
	s.Close()
	s = open(t, dir, storage.Options{})
	if st, err := s.Defrag(context.Background(), ix); err != nil || st.Files != 0 {
		t.Fatalf("Defrag with everything live: %+v, %v", st, err)
	}
	if c := open(t, crashCopy(t, dir), storage.Options{}); !c.Clean() {
		t.Fatal("a Defrag pass that changed nothing made the storage unclean")
	}
	for _, f := range s.Files() { // everything dies (as if deleted)
		if !f.Head {
			s.Release(storage.Location{File: f.ID, Size: uint32(f.Size - storage.HeaderSize)})
		}
	}
	if c := open(t, crashCopy(t, dir), storage.Options{}); c.Clean() {
		t.Fatal("Release left the storage clean")
	}
}
