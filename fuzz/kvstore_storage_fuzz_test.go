package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

func kvDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// kvSeedRecords are the records the kvstore storage seeds are made of.
func kvSeedRecords() []storage.Record {
	var recs []storage.Record
	for i := range 12 {
		r := storage.Record{Namespace: []byte("test"), Set: []byte("demo"), Key: fmt.Appendf(nil, "key%d", i),
			Generation: uint32(i), VoidTime: uint32(i * 7), LastUpdate: uint64(i) << 40,
			Bins: fmt.Appendf(nil, `{"i":%d}`, i), Tombstone: i%5 == 4, Copied: i%6 == 5, Seq: uint64(i + 1)}
		r.Digest[0], r.Digest[19] = byte(i), byte(255-i)
		recs = append(recs, r)
	}
	return append(recs, storage.Record{})
}

func kvIsTyped(err error) bool {
	for _, e := range []error{storage.ErrCorrupt, storage.ErrTruncated, storage.ErrForeign, storage.ErrNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzRecordDecode decodes fuzzed bytes as a record frame: it never
// panics, fails only with ErrTruncated or ErrCorrupt, and what it accepts
// re-encodes to exactly the bytes it consumed.
func FuzzRecordDecode(f *testing.F) {
	for _, r := range kvSeedRecords() {
		b, err := storage.EncodeRecord(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), b...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rec storage.Record
		n, err := storage.DecodeRecord(data, &rec)
		if err != nil {
			if !errors.Is(err, storage.ErrTruncated) && !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if n < storage.MinFrame || n > len(data) {
			t.Fatalf("frame size %d of %d bytes", n, len(data))
		}
		if n != storage.FrameSize(&rec) {
			t.Fatalf("frame size %d, record's %d", n, storage.FrameSize(&rec))
		}
		again, err := storage.EncodeRecord(nil, &rec)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, data[:n]) {
			t.Fatalf("re-encoded %x\nconsumed   %x", again, data[:n])
		}
	})
}

// kvSeedLog returns the bytes of the log files of a real storage with
// small files: the first (sealed) and the head.
func kvSeedLog(f *testing.F) (sealed, head []byte) {
	dir := f.TempDir()
	s, err := storage.Open(dir, storage.Options{FileSize: 4 << 10, Logger: kvDiscard()})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; len(s.Files()) < 2; i++ {
		r := kvSeedRecords()[i%12]
		if _, err := s.Append(r); err != nil {
			f.Fatal(err)
		}
	}
	files := s.Files()
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	read := func(id uint32) []byte {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("log-%08x.dat", id)))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	return read(files[0].ID), read(files[1].ID)
}

// FuzzStorageOpen opens a directory whose only log file holds fuzzed
// bytes (seeded with real files of a storage): Open and Scan never panic
// or hang and fail only with typed errors; every record Scan delivers
// reads back from its location; and an accepted log takes an append, a
// clean close and a clean reopen with that record in it.
func FuzzStorageOpen(f *testing.F) {
	sealed, head := kvSeedLog(f)
	f.Add(sealed)
	f.Add(head)
	f.Add(head[:len(head)-3])
	f.Add(sealed[:storage.HeaderSize])
	f.Add(append(bytes.Clone(head), 0xa5, 0xa5, 0xa5, 0xa5, 0, 0, 0, 0, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "log-00000001.dat"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := storage.Open(dir, storage.Options{Logger: kvDiscard()})
		if err != nil {
			if !kvIsTyped(err) {
				t.Fatalf("Open: untyped error: %v", err)
			}
			return
		}
		defer s.Close()
		var locs []storage.Location
		var seqs []uint64
		err = s.Scan(func(rec storage.Record, loc storage.Location) error {
			locs, seqs = append(locs, loc), append(seqs, rec.Seq)
			return nil
		})
		if err != nil {
			t.Fatalf("Scan after Open accepted the file (tail cut): %v", err)
		}
		for i, loc := range locs {
			rec, err := s.Read(loc)
			if err != nil || rec.Seq != seqs[i] {
				t.Fatalf("record %d at %v: seq %d, %v", i, loc, rec.Seq, err)
			}
		}
		if s.Identity().File != 1 {
			t.Fatalf("identity %v", s.Identity())
		}
		r := storage.Record{Namespace: []byte("ns"), Key: []byte("appended"), Bins: []byte("{}")}
		loc, err := s.Append(r)
		if err != nil {
			t.Fatalf("Append to an accepted log: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := storage.Open(dir, storage.Options{Logger: kvDiscard()})
		if err != nil {
			t.Fatalf("reopen after a clean close: %v", err)
		}
		defer s2.Close()
		got, err := s2.Read(loc)
		if !s2.Clean() || err != nil || string(got.Key) != "appended" {
			t.Fatalf("reopen: clean %v, appended record %q, %v", s2.Clean(), got.Key, err)
		}
	})
}

// FuzzStorageState opens a real log (two files, closed cleanly) whose
// state file, which a clean Open trusts instead of reading the log, holds
// fuzzed bytes (seeded with the real one, which also carries the unplaced
// dead bytes of a data-in-index namespace): Open never panics and either
// treats the stop as unclean or accepts a state that matches the files;
// either way every record still reads back, and a Defrag pass (which may
// survey, asked by the saved unplaced count) neither fails nor loses one.
func FuzzStorageState(f *testing.F) {
	src := f.TempDir()
	s, err := storage.Open(src, storage.Options{FileSize: 4 << 10, Logger: kvDiscard()})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; len(s.Files()) < 2; i++ {
		if _, err := s.Append(kvSeedRecords()[i%12]); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.ReleaseUnplaced(100_000); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(src, "state.dat"))
	if err != nil {
		f.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		f.Fatal(err)
	}
	logs := map[string][]byte{}
	for _, e := range ents {
		if e.Name() != "state.dat" {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			logs[e.Name()] = b
		}
	}
	f.Add(state)
	f.Add(state[:len(state)-1])
	bad := bytes.Clone(state)
	bad[36] ^= 0xff // the unplaced count, so the checksum fails
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for name, b := range logs {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "state.dat"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := storage.Open(dir, storage.Options{FileSize: 4 << 10, Logger: kvDiscard()})
		if err != nil {
			t.Fatalf("Open with a fuzzed state file over a good log: %v", err)
		}
		defer s.Close()
		var locs []storage.Location
		if err := s.Scan(func(_ storage.Record, loc storage.Location) error {
			locs = append(locs, loc)
			return nil
		}); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		live := kvAllLive{}
		for _, loc := range locs {
			live[loc] = true
		}
		if _, err := s.Defrag(t.Context(), live); err != nil {
			t.Fatalf("Defrag: %v", err)
		}
		n := 0
		if err := s.Scan(func(storage.Record, storage.Location) error {
			n++
			return nil
		}); err != nil || n < len(locs) {
			t.Fatalf("after Defrag: %d records (%v), had %d", n, err, len(locs))
		}
	})
}

// kvAllLive says every record at a location it holds is live, and lets
// every move happen.
type kvAllLive map[storage.Location]bool

func (l kvAllLive) Live(_ *storage.Record, loc storage.Location) bool { return l[loc] }
func (l kvAllLive) Moved(_ *storage.Record, _, _ storage.Location) bool {
	return true
}
