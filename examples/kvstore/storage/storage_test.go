package storage_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

func TestAppendReadRoundTrip(t *testing.T) {
	s := open(t, t.TempDir(), storage.Options{})
	recs := []storage.Record{
		mkRec("a", `{"bin":1}`),
		{Namespace: []byte(strings.Repeat("n", storage.MaxNamespace)), Digest: digestOf("b"),
			Set: []byte(strings.Repeat("s", storage.MaxSet)), Key: bytes.Repeat([]byte{0}, 1000),
			Generation: 1<<32 - 1, VoidTime: 7, LastUpdate: 1<<64 - 1, Bins: bytes.Repeat([]byte("x"), 10000)},
		{Digest: digestOf("empty")},
		tombRec("a"),
	}
	var prev storage.Identity
	var prevSeq uint64
	for i, r := range recs {
		id0 := s.Identity()
		loc := mustAppend(t, s, r)
		if id := s.Identity(); id == id0 || id == prev {
			t.Fatalf("append %d: identity did not change: %v", i, id)
		}
		prev = s.Identity()
		if loc.Size != uint32(storage.FrameSize(&r)) {
			t.Fatalf("append %d: size %d, want %d", i, loc.Size, storage.FrameSize(&r))
		}
		got, err := s.Read(loc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq <= prevSeq {
			t.Fatalf("append %d: seq %d not above %d", i, got.Seq, prevSeq)
		}
		prevSeq = got.Seq
		if !bytes.Equal(got.Namespace, r.Namespace) || got.Digest != r.Digest || !bytes.Equal(got.Set, r.Set) ||
			!bytes.Equal(got.Key, r.Key) || got.Generation != r.Generation || got.VoidTime != r.VoidTime ||
			got.LastUpdate != r.LastUpdate || got.Tombstone != r.Tombstone || !bytes.Equal(got.Bins, r.Bins) || got.Copied {
			t.Fatalf("append %d: read back %+v, wrote %+v", i, got, r)
		}
	}
}

func TestRecordLimits(t *testing.T) {
	s := open(t, t.TempDir(), storage.Options{FileSize: 8 << 10})
	cases := []struct {
		name string
		rec  storage.Record
		want error
	}{
		{"namespace", storage.Record{Namespace: make([]byte, storage.MaxNamespace+1)}, storage.ErrInvalidRecord},
		{"set", storage.Record{Set: make([]byte, storage.MaxSet+1)}, storage.ErrInvalidRecord},
		{"key", storage.Record{Key: make([]byte, storage.MaxKey+1)}, storage.ErrInvalidRecord},
		{"location size", storage.Record{Bins: make([]byte, storage.MaxSize)}, storage.ErrTooLarge},
		{"file size", storage.Record{Bins: make([]byte, 8<<10)}, storage.ErrTooLarge},
	}
	for _, c := range cases {
		if _, err := s.Append(c.rec); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A record that fills a file exactly is accepted.
	r := storage.Record{Bins: make([]byte, 8<<10-storage.HeaderSize-storage.MinFrame)}
	mustAppend(t, s, r)
}

func TestReadBadLocation(t *testing.T) {
	s := open(t, t.TempDir(), storage.Options{})
	loc := mustAppend(t, s, mkRec("a", "v"))
	mustAppend(t, s, mkRec("b", "w"))
	cases := []struct {
		loc  storage.Location
		want error
	}{
		{storage.Location{File: 9, Offset: loc.Offset, Size: loc.Size}, storage.ErrNotFound},
		{storage.Location{File: loc.File, Offset: 1 << 30, Size: loc.Size}, storage.ErrNotFound},
		{storage.Location{File: loc.File, Offset: 0, Size: loc.Size}, storage.ErrNotFound},
		{storage.Location{File: loc.File, Offset: loc.Offset, Size: 3}, storage.ErrNotFound},
		{storage.Location{File: loc.File, Offset: loc.Offset + 1, Size: loc.Size}, storage.ErrCorrupt},
		{storage.Location{File: loc.File, Offset: loc.Offset, Size: loc.Size + 1}, storage.ErrCorrupt},
		{storage.Location{File: loc.File, Offset: loc.Offset, Size: loc.Size - 1}, storage.ErrCorrupt},
	}
	for _, c := range cases {
		if _, err := s.Read(c.loc); !errors.Is(err, c.want) {
			t.Errorf("Read(%v): %v, want %v", c.loc, err, c.want)
		}
	}
}

// TestCorruptFrame flips a byte inside a record of a sealed file: Read of
// it and Scan fail with ErrCorrupt, the neighbours still read.
func TestCorruptFrame(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	var locs []storage.Location
	for i := range 100 {
		locs = append(locs, mustAppend(t, s, mkRec(fmt.Sprint(i), "value")))
	}
	bad := locs[3]
	if bad.File == s.Identity().File {
		t.Fatal("record 3 is in the head file; make the files smaller")
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("log-%08x.dat", bad.File)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, int64(bad.Offset)+int64(bad.Size)-2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := s.Read(bad); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("Read of the damaged record: %v, want ErrCorrupt", err)
	}
	if _, err := s.Read(locs[4]); err != nil {
		t.Fatalf("Read of its neighbour: %v", err)
	}
	n := 0
	err = s.Scan(func(storage.Record, storage.Location) error { n++; return nil })
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", bad.Offset)) {
		t.Fatalf("Scan: %v, want ErrCorrupt at offset %d", err, bad.Offset)
	}
	if n != 3 {
		t.Fatalf("Scan delivered %d records before the damage, want 3", n)
	}
}

// TestTornTail appends records, then makes, from a copy of the files as
// a crash would leave them, a torn tail of several kinds: Open cuts it,
// keeps every whole record and appends after it.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 16 << 10})
	want := map[string]string{}
	for i := range 300 {
		k, v := fmt.Sprint("k", i%120), fmt.Sprint("v", i)
		mustAppend(t, s, mkRec(k, v))
		want[k] = v
	}
	var next bytes.Buffer
	r := mkRec("torn", "never acknowledged")
	r.Seq = s.Identity().NextSeq
	frame, err := storage.EncodeRecord(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	next.Write(frame)
	badCRC := bytes.Clone(frame)
	badCRC[len(badCRC)-1] ^= 1
	cases := map[string][]byte{
		"half frame":    frame[:len(frame)/2],
		"prefix only":   frame[:5],
		"bad checksum":  badCRC,
		"zeros":         make([]byte, 300),
		"garbage":       bytes.Repeat([]byte{0xa5}, 1000),
		"huge length":   binary.LittleEndian.AppendUint32(nil, 1<<31),
		"whole + torn":  append(bytes.Clone(frame), frame[:9]...),
		"nothing extra": nil,
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			cp := crashCopy(t, dir)
			head := filepath.Join(cp, filepath.Base(headFile(t, s)))
			fi, err := os.Stat(head)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(head, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()
			c := open(t, cp, storage.Options{FileSize: 16 << 10})
			if c.Clean() {
				t.Fatal("Open of a crashed log reports clean")
			}
			w := want
			if name == "whole + torn" { // the whole frame stays: it was complete
				w = map[string]string{"torn": "never acknowledged"}
				for k, v := range want {
					w[k] = v
				}
			}
			if err := diff(rebuild(t, c, false, false), w); err != nil {
				t.Fatal(err)
			}
			fi2, _ := os.Stat(head)
			if wantSize := fi.Size() + int64(len(frame))*boolInt(name == "whole + torn"); fi2.Size() != wantSize {
				t.Fatalf("head file is %d bytes after the cut, want %d", fi2.Size(), wantSize)
			}
			mustAppend(t, c, mkRec("after", "crash"))
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c2 := open(t, cp, storage.Options{})
			w2 := map[string]string{"after": "crash"}
			for k, v := range w {
				w2[k] = v
			}
			if err := diff(rebuild(t, c2, false, false), w2); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// TestCheckCatchesLoss is the negative control of the rebuild check used
// by the crash tests: a log that lost its last acknowledged record, or
// kept a deleted one, fails it.
func TestCheckCatchesLoss(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{})
	mustAppend(t, s, mkRec("a", "1"))
	mustAppend(t, s, mkRec("b", "2"))
	mustAppend(t, s, tombRec("b"))
	last := mustAppend(t, s, mkRec("c", "3"))
	want := map[string]string{"a": "1", "c": "3"}
	if err := diff(rebuild(t, s, false, false), want); err != nil {
		t.Fatal(err)
	}
	if err := diff(rebuild(t, s, false, true), want); err == nil || !strings.Contains(err.Error(), `"b" = "2" is back`) {
		t.Fatalf("a rebuild that ignores tombstones passed the check: %v", err)
	}
	cp := crashCopy(t, dir)
	head := filepath.Join(cp, filepath.Base(headFile(t, s)))
	if err := os.Truncate(head, int64(last.Offset)); err != nil {
		t.Fatal(err)
	}
	c := open(t, cp, storage.Options{})
	if err := diff(rebuild(t, c, false, false), want); err == nil || !strings.Contains(err.Error(), `"c" missing`) {
		t.Fatalf("a log without its last record passed the check: %v", err)
	}
}

func TestRolloverAndScanOrder(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	var locs []storage.Location
	for i := range 500 {
		locs = append(locs, mustAppend(t, s, mkRec(fmt.Sprint(i), strings.Repeat("x", i%50))))
	}
	if n := len(s.Files()); n < 10 {
		t.Fatalf("%d files, want many", n)
	}
	i := 0
	err := s.Scan(func(rec storage.Record, loc storage.Location) error {
		if string(rec.Key) != fmt.Sprint(i) || loc != locs[i] || rec.Seq != uint64(i+1) {
			return fmt.Errorf("record %d: key %q seq %d at %v, want at %v", i, rec.Key, rec.Seq, loc, locs[i])
		}
		i++
		return nil
	})
	if err != nil || i != len(locs) {
		t.Fatalf("Scan: %v after %d records", err, i)
	}
	for i, loc := range locs {
		if loc.File > storage.MaxFileID || loc.Offset > storage.MaxOffset || loc.Size > storage.MaxSize {
			t.Fatalf("location %d out of range: %v", i, loc)
		}
	}
}

// TestCleanReopen: Close saves the state and the next Open is clean with
// the same identity and accounting; an Open that writes nothing keeps it
// clean; the first write invalidates it.
func TestCleanReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	var locs []storage.Location
	for i := range 200 {
		locs = append(locs, mustAppend(t, s, mkRec(fmt.Sprint(i), "v")))
	}
	for _, l := range locs[:50] {
		s.Release(l)
	}
	id, files := s.Identity(), s.Files()
	if s.Clean() {
		t.Fatal("a new storage reports a clean open")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(mkRec("x", "y")); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	for range 2 { // an Open without writes leaves the storage clean
		s2 := open(t, dir, storage.Options{})
		if !s2.Clean() || s2.Identity() != id {
			t.Fatalf("reopen: clean %v identity %v, want clean %v", s2.Clean(), s2.Identity(), id)
		}
		if got := s2.Files(); fmt.Sprint(got) != fmt.Sprint(files) {
			t.Fatalf("accounting after reopen:\n%v\nwant\n%v", got, files)
		}
		s2.Close()
	}
	s3 := open(t, dir, storage.Options{})
	mustAppend(t, s3, mkRec("x", "y"))
	s4 := open(t, crashCopy(t, dir), storage.Options{})
	if s4.Clean() {
		t.Fatal("a storage killed after a write reopens clean")
	}
	if s4.Identity() != s3.Identity() {
		t.Fatalf("identity after crash %v, before %v", s4.Identity(), s3.Identity())
	}
}

// TestIdentityElsewhere: a copy of the directory (a restore on another
// host) has the same identity; another storage has another UUID.
func TestIdentityElsewhere(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{})
	mustAppend(t, s, mkRec("a", "1"))
	id := s.Identity()
	s.Close()
	c := open(t, crashCopy(t, dir), storage.Options{})
	if c.Identity() != id {
		t.Fatalf("identity of the copy %v, original %v", c.Identity(), id)
	}
	o := open(t, t.TempDir(), storage.Options{})
	if o.Identity().UUID == id.UUID {
		t.Fatal("two storages share a UUID")
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, storage.Options{})
	if _, err := storage.Open(dir, storage.Options{Logger: discard()}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// TestHostileFiles: damaged headers, foreign and misnamed files give
// typed errors.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	for i := range 60 {
		mustAppend(t, s, mkRec(fmt.Sprint(i), "v"))
	}
	s.Close()
	other := t.TempDir()
	o := open(t, other, storage.Options{})
	o.Close()
	name1 := "log-00000001.dat"
	first, err := os.ReadFile(filepath.Join(dir, name1))
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := os.ReadFile(filepath.Join(other, name1))
	mut := func(f func(b []byte) []byte) func() []byte {
		return func() []byte { return f(bytes.Clone(first)) }
	}
	cases := []struct {
		name string
		file string
		data func() []byte
		want error
	}{
		{"magic", name1, mut(func(b []byte) []byte { b[0] = 'X'; return b }), storage.ErrCorrupt},
		{"checksum", name1, mut(func(b []byte) []byte { b[40] ^= 1; return b }), storage.ErrCorrupt},
		{"truncated header", name1, mut(func(b []byte) []byte { return b[:30] }), storage.ErrTruncated},
		{"empty", name1, mut(func(b []byte) []byte { return nil }), storage.ErrTruncated},
		{"misnamed", "log-000000ff.dat", mut(func(b []byte) []byte { return b }), storage.ErrCorrupt},
		{"foreign", name1, func() []byte { return foreign }, storage.ErrForeign},
		{"over capacity", name1, mut(func(b []byte) []byte { return append(b, make([]byte, 8<<10)...) }), storage.ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := crashCopy(t, dir)
			if err := os.WriteFile(filepath.Join(cp, c.file), c.data(), 0o640); err != nil {
				t.Fatal(err)
			}
			s, err := storage.Open(cp, storage.Options{Logger: discard()})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted it")
			}
			if !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, storage.ErrTruncated) && !errors.Is(err, storage.ErrForeign) {
				t.Fatalf("untyped error: %v", err)
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "log-") {
				t.Fatalf("%v, want %v naming the file", err, c.want)
			}
		})
	}
	// Not regular files: a directory, a symlink to a good file, a FIFO.
	for name, mk := range map[string]func(p string) error{
		"directory": func(p string) error { return os.Mkdir(p, 0o750) },
		"symlink":   func(p string) error { return os.Symlink(filepath.Join(dir, name1), p) },
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o640) },
	} {
		cp := crashCopy(t, dir)
		if err := mk(filepath.Join(cp, "log-00000100.dat")); err != nil {
			t.Fatal(err)
		}
		if s, err := storage.Open(cp, storage.Options{Logger: discard()}); !errors.Is(err, storage.ErrCorrupt) {
			if err == nil {
				s.Close()
			}
			t.Errorf("%s as a log file: %v, want ErrCorrupt", name, err)
		}
	}
	// Leftover temporary files and unrelated files are not part of the log.
	cp := crashCopy(t, dir)
	os.WriteFile(filepath.Join(cp, "log-00000009.dat.tmp"), []byte("partial"), 0o640)
	os.WriteFile(filepath.Join(cp, "README"), []byte("hello"), 0o640)
	os.WriteFile(filepath.Join(cp, "notes.tmp"), []byte("the user's"), 0o640)
	c := open(t, cp, storage.Options{})
	if got := len(rebuild(t, c, false, false)); got != 60 {
		t.Fatalf("%d records, want 60", got)
	}
	if _, err := os.Stat(filepath.Join(cp, "log-00000009.dat.tmp")); !os.IsNotExist(err) {
		t.Fatalf("leftover temporary file not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cp, "notes.tmp")); err != nil {
		t.Fatalf("a file that is not the storage's was touched: %v", err)
	}
}

// TestSyncEveryWrite appends from several goroutines with an fdatasync
// per acknowledgement (shared by concurrent appends) and reads all back.
func TestSyncEveryWrite(t *testing.T) {
	s := open(t, t.TempDir(), storage.Options{SyncEveryWrite: true, FileSize: 16 << 10})
	var wg sync.WaitGroup
	locs := make([][]storage.Location, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				loc, err := s.Append(mkRec(fmt.Sprint(g, "/", i), "v"))
				if err != nil {
					t.Error(err)
					return
				}
				locs[g] = append(locs[g], loc)
			}
		})
	}
	wg.Wait()
	for g := range locs {
		for i, loc := range locs[g] {
			rec, err := s.Read(loc)
			if err != nil || string(rec.Key) != fmt.Sprint(g, "/", i) {
				t.Fatalf("%d/%d at %v: %q %v", g, i, loc, rec.Key, err)
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeNeverPanics decodes every prefix and single-byte corruption of
// a frame: each gives a typed error or the record.
func TestDecodeNeverPanics(t *testing.T) {
	r := mkRec("key", "value")
	frame, err := storage.EncodeRecord(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	var rec storage.Record
	for i := range len(frame) {
		if _, err := storage.DecodeRecord(frame[:i], &rec); !errors.Is(err, storage.ErrTruncated) && !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("prefix %d: %v", i, err)
		}
		for _, x := range []byte{1, 0x80, 0xff} {
			b := bytes.Clone(frame)
			b[i] ^= x
			if _, err := storage.DecodeRecord(b, &rec); err == nil {
				t.Fatalf("byte %d ^ %#x: corruption not detected", i, x)
			}
		}
	}
}

// TestTruncatedSealedFile: a sealed file cut short (outside the storage's
// control) is not silently trimmed: Scan reports ErrCorrupt at the cut.
func TestTruncatedSealedFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, storage.Options{FileSize: 4 << 10})
	var locs []storage.Location
	for i := range 100 {
		locs = append(locs, mustAppend(t, s, mkRec(fmt.Sprint(i), "value")))
	}
	s.Close()
	if err := os.Truncate(filepath.Join(dir, "log-00000001.dat"), int64(locs[5].Offset)+10); err != nil {
		t.Fatal(err)
	}
	c := open(t, dir, storage.Options{})
	err := c.Scan(func(storage.Record, storage.Location) error { return nil })
	if !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "log-00000001.dat") {
		t.Fatalf("Scan: %v, want ErrCorrupt naming the file", err)
	}
	if _, err := c.Read(locs[5]); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Read past the cut: %v, want ErrNotFound", err)
	}
}

// TestScanAllocatesPerScanNotPerRecord: scanning 20 000 records allocates
// a bounded number of times (the read buffer, the file list), not once
// per record.
func TestScanAllocatesPerScanNotPerRecord(t *testing.T) {
	s := open(t, t.TempDir(), storage.Options{FileSize: 256 << 10})
	const n = 20000
	key := make([]byte, 0, 16)
	if err := s.BulkLoad(n, func(i int, rec *storage.Record) error {
		key = fmt.Appendf(key[:0], "k%d", i)
		rec.Namespace, rec.Key, rec.Bins = []byte("test"), key, key
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	count := 0
	fn := func(rec storage.Record, _ storage.Location) error { count += len(rec.Key); return nil }
	allocs := testing.AllocsPerRun(3, func() {
		if err := s.Scan(fn); err != nil {
			t.Fatal(err)
		}
	})
	if files := len(s.Files()); allocs > float64(10+2*files) {
		t.Fatalf("%v allocations per Scan of %d records in %d files", allocs, n, files)
	}
	if count == 0 {
		t.Fatal("nothing scanned")
	}
}
