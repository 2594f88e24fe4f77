package storage

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/failpoint"
)

// Failpoint names (see package failpoint), hit by a Storage whose
// Options.Failpoints arms them.
const (
	// FailAppendMid is hit after the first half of a frame was written
	// and before the second: a kill there leaves a torn tail.
	FailAppendMid = "kvstore.storage.append.mid"
	// FailAppendAfter is hit once a frame is in the log (and synced, with
	// SyncEveryWrite) but before Append returns its Location: the record
	// is there but was never acknowledged.
	FailAppendAfter = "kvstore.storage.append.after"
	// FailDefragMid is hit by the defragmenter after each record it
	// copied, before the source file is removed.
	FailDefragMid = "kvstore.storage.defrag.mid"
)

// DefaultFileSize is the default capacity of a log file.
const DefaultFileSize = 64 << 20

// DefaultDefragThreshold is the default live share (live bytes over the
// file's capacity) under which a sealed file is defragmented.
const DefaultDefragThreshold = 0.5

// Options configure [Open]. The zero value is valid.
type Options struct {
	// FileSize is the capacity of each new log file, header included;
	// default DefaultFileSize, at least 4 KiB, at most 2^40-1. Existing
	// files keep the capacity they were created with.
	FileSize uint64
	// SyncEveryWrite makes Append call fdatasync before it returns, so
	// that an acknowledged record survives a power loss. Concurrent
	// appends share one fdatasync (group commit). Without it an
	// acknowledged record is in the kernel's page cache: it survives the
	// process being killed, not the machine losing power (call Sync for
	// a durability point).
	SyncEveryWrite bool
	// DefragThreshold is the live share under which Defrag rewrites a
	// sealed file; default DefaultDefragThreshold, in (0, 1).
	DefragThreshold float64
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
	// Failpoints arms the Fail* failpoints; nil in production.
	Failpoints *failpoint.Set
}

func (o *Options) fill() error {
	if o.FileSize == 0 {
		o.FileSize = DefaultFileSize
	}
	if o.FileSize < 4<<10 || o.FileSize > MaxOffset {
		return fmt.Errorf("%w: FileSize %d outside [4096, 2^40-1]", ErrConfig, o.FileSize)
	}
	if o.DefragThreshold == 0 {
		o.DefragThreshold = DefaultDefragThreshold
	}
	if !(o.DefragThreshold > 0 && o.DefragThreshold < 1) {
		return fmt.Errorf("%w: DefragThreshold %v outside (0, 1)", ErrConfig, o.DefragThreshold)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Identity identifies the exact content of a storage: the UUID created
// with it and kept in every file header, and its committed length, given
// as the head file, the end of its last acknowledged record, and the next
// Seq. Every acknowledged Append (and every defragmenter copy) changes
// it; it depends only on the files' contents, so a copy of the directory
// restored on another host reports the same Identity.
type Identity struct {
	UUID    [16]byte
	File    uint32 // head file id
	Offset  uint64 // committed end of the head file
	NextSeq uint64 // Seq of the next Append
}

// String formats the identity as uuid/file:offset/seq.
func (id Identity) String() string {
	u := id.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x/%d:%d/%d", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], id.File, id.Offset, id.NextSeq)
}

// logFile is one open file of the log.
type logFile struct {
	id       uint32
	order    uint64
	capacity uint64
	baseSeq  uint64
	f        *os.File
	fd       int
	end      atomic.Uint64 // committed end: records lie in [HeaderSize, end)
	dead     atomic.Int64  // bytes of released, tombstone and copied-away records

	synced uint64 // end covered by the last fdatasync; under Storage.syncMu

	// Tombstone-drop information (see defrag.go), under Storage.mu.
	filt   *filter // nil: not known yet
	minSeq uint64  // smallest Seq in the file, valid when filt != nil
}

// Storage is an append-only record log in a directory. Its methods are
// safe for concurrent use.
type Storage struct {
	dir  string
	opts Options
	log  *slog.Logger
	fp   *failpoint.Set
	dirf *os.File // the directory, flocked
	uuid [16]byte
	// clean is set when Open restored the accounting of a clean Close.
	clean bool

	mu          sync.Mutex // appends: head, nextSeq, nextOrder, buf, failed, filters
	head        *logFile
	nextSeq     uint64
	nextOrder   uint64
	buf         []byte
	failed      error
	stateOnDisk atomic.Bool // state.dat exists: remove at the first mutation

	filesMu sync.RWMutex // files map; readers hold it while they read a file
	files   map[uint32]*logFile

	syncMu sync.Mutex // group commit

	defragMu sync.Mutex // one defragmentation pass at a time
	closed   atomic.Bool
	// unplaced counts bytes of dead records whose file is not known
	// (ReleaseUnplaced) since the last survey.
	unplaced atomic.Uint64

	// maxID is the largest file id used: MaxFileID, smaller in tests
	// (export_test.go) of id reuse.
	maxID uint32
	// unsafeDropTombstones makes Defrag drop every tombstone: only for
	// the negative control of the tests (export_test.go).
	unsafeDropTombstones bool
}

// Open opens the storage in dir, creating the directory and a new storage
// (with a new random UUID) if it holds no log file. It takes an exclusive
// lock on the directory ([ErrLocked] if another Storage has it).
//
// After a clean [Storage.Close], Open reads no record: the accounting is
// restored from the state file and [Storage.Clean] reports true.
// Otherwise it reads the head file to its end, cuts a torn tail (the part
// of a record whose write a crash interrupted; logged) and starts the
// accounting afresh, to be rebuilt by a [Storage.Scan].
//
// Damaged or foreign files give errors wrapping [ErrCorrupt],
// [ErrTruncated] or [ErrForeign] that name the file; Open never panics
// on hostile content.
func Open(dir string, opts Options) (*Storage, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("storage: create directory: %w", err)
	}
	dirf, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: open directory: %w", err)
	}
	if err := unix.Flock(int(dirf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		dirf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is open in another process or Storage; stop it first", ErrLocked, dir)
		}
		return nil, fmt.Errorf("storage: lock %s: %w", dir, err)
	}
	s := &Storage{dir: dir, opts: opts, log: opts.Logger.With("storage", dir), fp: opts.Failpoints,
		dirf: dirf, files: map[uint32]*logFile{}, maxID: MaxFileID}
	if err := s.load(); err != nil {
		s.closeFiles()
		dirf.Close()
		return nil, err
	}
	return s, nil
}

// load reads the directory into s.
func (s *Storage) load() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("storage: read directory: %w", err)
	}
	var files []*logFile
	haveUUID := false
	for _, e := range ents {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".tmp"); ok && (base == stateName || isFileName(base)) {
			// A file being created or a state being written when a crash
			// came: never renamed into place, so never part of the log.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return fmt.Errorf("storage: remove leftover %s: %w", name, err)
			}
			continue
		}
		id, ok := parseFileName(name)
		if !ok {
			continue
		}
		lf, h, err := s.openFile(id)
		if err != nil {
			return err
		}
		files = append(files, lf)
		s.files[id] = lf
		if !haveUUID {
			s.uuid, haveUUID = h.uuid, true
		} else if h.uuid != s.uuid {
			return fmt.Errorf("%w: %s has storage UUID %x, the others %x: move it out of %s",
				ErrForeign, name, h.uuid, s.uuid, s.dir)
		}
	}
	if len(files) == 0 {
		if _, err := rand.Read(s.uuid[:]); err != nil {
			return fmt.Errorf("storage: UUID: %w", err)
		}
		s.nextSeq, s.nextOrder = 1, 1
		lf, err := s.createFile(1)
		if err != nil {
			return err
		}
		s.files[1], s.head = lf, lf
		s.log.Info("created storage", "uuid", fmt.Sprintf("%x", s.uuid), "file_size", s.opts.FileSize)
		return nil
	}
	slices.SortFunc(files, func(a, b *logFile) int { return cmp.Compare(a.order, b.order) })
	for i := 1; i < len(files); i++ {
		if files[i].order == files[i-1].order {
			return fmt.Errorf("%w: %s and %s have the same creation number %d", ErrCorrupt,
				fileName(files[i-1].id), fileName(files[i].id), files[i].order)
		}
	}
	s.head = files[len(files)-1]
	s.nextOrder = s.head.order + 1
	if st := s.readState(); st != nil {
		s.clean = true
		s.nextSeq, s.nextOrder = st.nextSeq, st.nextOrder
		for id, lf := range s.files {
			lf.dead.Store(int64(st.dead[id]))
		}
		s.unplaced.Store(st.unplaced)
		s.log.Info("opened storage after a clean close", "files", len(files), "identity", s.identityLocked())
		return nil
	}
	// Unclean: find the end of the head file and cut what follows.
	maxSeq, err := s.cutTail(s.head)
	if err != nil {
		return err
	}
	s.nextSeq = max(s.head.baseSeq, maxSeq+1)
	s.log.Info("opened storage after an unclean stop; accounting needs a Scan", "files", len(files), "identity", s.identityLocked())
	return nil
}

// openFile opens and validates log file id.
func (s *Storage) openFile(id uint32) (*logFile, fileHeader, error) {
	name := fileName(id)
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) {
		return nil, fileHeader{}, fmt.Errorf("storage: %s: %w: not a regular file (%v): move it out of %s", name, ErrCorrupt, err, s.dir)
	}
	if err != nil {
		return nil, fileHeader{}, fmt.Errorf("storage: open %s: %w", name, err)
	}
	fail := func(err error) (*logFile, fileHeader, error) {
		f.Close()
		return nil, fileHeader{}, fmt.Errorf("storage: %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%w: not a regular file", ErrCorrupt))
	}
	hb := make([]byte, HeaderSize)
	if n, err := f.ReadAt(hb, 0); err != nil && !(errors.Is(err, io.EOF) && n < HeaderSize) {
		return fail(err)
	} else {
		hb = hb[:n]
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return fail(err)
	}
	if h.id != id {
		return fail(fmt.Errorf("%w: header names file id %d: a renamed file? give it back its name %s",
			ErrCorrupt, h.id, fileName(h.id)))
	}
	size := uint64(fi.Size())
	if size > h.capacity {
		return fail(fmt.Errorf("%w: %d bytes, more than its capacity %d", ErrCorrupt, size, h.capacity))
	}
	lf := &logFile{id: id, order: h.order, capacity: h.capacity, baseSeq: h.baseSeq, f: f, fd: int(f.Fd())}
	lf.end.Store(size)
	lf.synced = size
	return lf, h, nil
}

// readState returns the state a clean Close saved, if it matches the
// files; nil otherwise.
func (s *Storage) readState() *savedState {
	b, err := os.ReadFile(filepath.Join(s.dir, stateName))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("state file unreadable; treating the stop as unclean", "err", err)
		}
		return nil
	}
	s.stateOnDisk.Store(true)
	st, err := decodeState(b)
	reason := ""
	switch {
	case err != nil:
		reason = err.Error()
	case st.uuid != s.uuid:
		reason = "state of another storage"
	case st.head != s.head.id || st.headEnd != s.head.end.Load():
		reason = fmt.Sprintf("head %d:%d, state says %d:%d", s.head.id, s.head.end.Load(), st.head, st.headEnd)
	case len(st.dead) != len(s.files):
		reason = fmt.Sprintf("%d files, state knows %d", len(s.files), len(st.dead))
	case st.nextSeq < s.head.baseSeq || st.nextOrder <= s.head.order:
		reason = "sequence numbers behind the files"
	}
	for id := range s.files {
		if reason != "" {
			break // st may be nil (a state file that did not decode)
		}
		if _, ok := st.dead[id]; !ok {
			reason = fmt.Sprintf("%s not in the state", fileName(id))
		}
	}
	if reason != "" {
		s.log.Warn("state file does not match the log; treating the stop as unclean", "reason", reason)
		return nil
	}
	return st
}

// cutTail validates every frame of lf from its header on, truncates the
// file after the last valid one, and returns the largest Seq found.
func (s *Storage) cutTail(lf *logFile) (uint64, error) {
	size := lf.end.Load()
	var maxSeq uint64
	off := uint64(HeaderSize)
	var buf []byte
	err := readFrames(lf.f, HeaderSize, size, &buf, func(rec *Record, o uint64, n int) error {
		maxSeq = max(maxSeq, rec.Seq)
		off = o + uint64(n)
		return nil
	})
	var bad *frameError
	if err != nil && !errors.As(err, &bad) {
		return 0, fmt.Errorf("storage: read %s: %w", fileName(lf.id), err)
	}
	if off < size {
		s.log.Warn("cutting the torn tail of the log", "file", fileName(lf.id), "offset", off, "bytes", size-off, "why", err)
		if err := lf.f.Truncate(int64(off)); err != nil {
			return 0, fmt.Errorf("storage: cut the torn tail of %s at %d: %w", fileName(lf.id), off, err)
		}
		if err := unix.Fdatasync(lf.fd); err != nil {
			return 0, fmt.Errorf("storage: sync %s: %w", fileName(lf.id), err)
		}
		lf.end.Store(off)
		lf.synced = off
	}
	return maxSeq, nil
}

// createFile creates log file id as the new head's successor: written
// under a temporary name, synced, renamed into place, directory synced.
// It uses s.nextSeq and s.nextOrder (and advances the latter).
func (s *Storage) createFile(id uint32) (*logFile, error) {
	h := fileHeader{uuid: s.uuid, id: id, capacity: s.opts.FileSize, order: s.nextOrder, baseSeq: s.nextSeq}
	name := fileName(id)
	tmp := filepath.Join(s.dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", name, err)
	}
	fail := func(err error) (*logFile, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("storage: create %s: %w", name, err)
	}
	if _, err := f.WriteAt(h.encode(), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return fail(err)
	}
	if err := s.dirf.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: sync directory after creating %s: %w", name, err)
	}
	s.nextOrder++
	lf := &logFile{id: id, order: h.order, capacity: h.capacity, baseSeq: h.baseSeq, f: f, fd: int(f.Fd())}
	lf.end.Store(HeaderSize)
	lf.synced = HeaderSize
	lf.filt, lf.minSeq = newFilter(h.capacity), ^uint64(0)
	return lf, nil
}

// Clean reports whether Open found the state of a clean Close, so that
// the live-byte accounting is exact without a Scan.
func (s *Storage) Clean() bool { return s.clean }

// Dir returns the storage's directory.
func (s *Storage) Dir() string { return s.dir }

// Identity returns the storage's identity now.
func (s *Storage) Identity() Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identityLocked()
}

func (s *Storage) identityLocked() Identity {
	return Identity{UUID: s.uuid, File: s.head.id, Offset: s.head.end.Load(), NextSeq: s.nextSeq}
}

// mutating removes the clean-close state file before the first mutation
// after Open, so that a crash from now on is seen as unclean, while a
// process that opened and stopped without writing leaves it valid.
func (s *Storage) mutating() error {
	if !s.stateOnDisk.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mutatingLocked()
}

func (s *Storage) mutatingLocked() error {
	if !s.stateOnDisk.Load() {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, stateName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: invalidate the clean-close state: %w", err)
	}
	if err := s.dirf.Sync(); err != nil {
		return fmt.Errorf("storage: invalidate the clean-close state: sync directory: %w", err)
	}
	s.stateOnDisk.Store(false)
	return nil
}

// Append writes rec at the head of the log and returns its Location once
// the record is in the log (see Options.SyncEveryWrite for what that
// means on power loss). It assigns rec.Seq. A record whose frame exceeds
// MaxSize or a file's capacity fails with [ErrTooLarge]; a field too
// long with [ErrInvalidRecord].
func (s *Storage) Append(rec Record) (Location, error) {
	rec.Copied = false
	return s.append(&rec, false)
}

// append writes rec; copy keeps rec.Seq (a defragmenter copy).
func (s *Storage) append(rec *Record, keepSeq bool) (Location, error) {
	if err := check(rec); err != nil {
		return Location{}, err
	}
	size := uint64(FrameSize(rec))
	s.mu.Lock()
	if err := s.usableLocked(); err != nil {
		s.mu.Unlock()
		return Location{}, err
	}
	if err := s.mutatingLocked(); err != nil {
		s.mu.Unlock()
		return Location{}, err
	}
	if size > s.opts.FileSize-HeaderSize {
		s.mu.Unlock()
		return Location{}, fmt.Errorf("%w: record frame of %d bytes, a log file holds %d: raise FileSize",
			ErrTooLarge, size, s.opts.FileSize-HeaderSize)
	}
	if s.head.end.Load()+size > s.head.capacity {
		if err := s.rollLocked(); err != nil {
			s.mu.Unlock()
			return Location{}, err
		}
	}
	if !keepSeq {
		rec.Seq = s.nextSeq
	}
	lf := s.head
	off := lf.end.Load()
	s.buf = encode(s.buf[:0], rec)
	if err := s.writeLocked(lf, s.buf, off, !keepSeq); err != nil {
		s.mu.Unlock()
		return Location{}, err
	}
	end := off + size
	lf.end.Store(end)
	if !keepSeq {
		s.nextSeq++
	}
	if lf.filt != nil {
		lf.filt.add(&rec.Digest)
		lf.minSeq = min(lf.minSeq, rec.Seq)
	}
	if rec.Tombstone {
		lf.dead.Add(int64(size)) // never live data; see Defrag
	}
	s.mu.Unlock()
	if s.opts.SyncEveryWrite {
		if err := s.syncTo(lf, end); err != nil {
			return Location{}, err
		}
	}
	if !keepSeq {
		s.fp.Hit(FailAppendAfter)
	}
	return Location{File: lf.id, Offset: off, Size: uint32(size)}, nil
}

func (s *Storage) usableLocked() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.failed
}

// writeLocked writes frame b at off in lf. For an Append (fail set) with
// FailAppendMid armed it writes it in two halves around the failpoint. A
// failed write is undone by truncating back to off; if even that fails
// the Storage is failed.
func (s *Storage) writeLocked(lf *logFile, b []byte, off uint64, fail bool) error {
	var err error
	if fail && s.fp.Armed(FailAppendMid) {
		half := len(b) / 2
		if _, err = lf.f.WriteAt(b[:half], int64(off)); err == nil {
			s.fp.Hit(FailAppendMid)
			_, err = lf.f.WriteAt(b[half:], int64(off)+int64(half))
		}
	} else {
		_, err = lf.f.WriteAt(b, int64(off))
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("storage: write %d bytes at %s:%d: %w", len(b), fileName(lf.id), off, err)
	if terr := lf.f.Truncate(int64(off)); terr != nil {
		s.failed = fmt.Errorf("%w: %w (and cutting it back: %v)", ErrFailed, err, terr)
		s.log.Error("log write failed and could not be undone; storage refuses writes", "err", s.failed)
	}
	return err
}

// rollLocked seals the head file (fdatasync, so that a sealed file is
// never torn) and creates the next one.
func (s *Storage) rollLocked() error {
	old := s.head
	if err := s.syncTo(old, old.end.Load()); err != nil {
		return err
	}
	s.filesMu.RLock()
	id, found := old.id, false
	for range s.maxID {
		id = id%s.maxID + 1
		if _, used := s.files[id]; !used {
			found = true
			break
		}
	}
	s.filesMu.RUnlock()
	if !found {
		return fmt.Errorf("%w: %d files exist", ErrLogFull, s.maxID)
	}
	lf, err := s.createFile(id)
	if err != nil {
		return err
	}
	s.filesMu.Lock()
	s.files[id] = lf
	s.filesMu.Unlock()
	s.head = lf
	return nil
}

// syncTo makes lf durable up to at least end; concurrent callers share
// one fdatasync.
func (s *Storage) syncTo(lf *logFile, end uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if lf.synced >= end {
		return nil
	}
	target := lf.end.Load()
	if err := unix.Fdatasync(lf.fd); err != nil {
		return fmt.Errorf("storage: fdatasync %s: %w", fileName(lf.id), err)
	}
	lf.synced = max(lf.synced, target)
	return nil
}

// Sync makes every acknowledged record durable against power loss.
func (s *Storage) Sync() error {
	s.mu.Lock()
	lf := s.head
	err := s.usableLocked()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.syncTo(lf, lf.end.Load())
}

// Read returns the record at loc, validating its frame and checksum:
// [ErrCorrupt] if they do not match, [ErrNotFound] if loc lies outside
// the log (for example in a file the defragmenter removed after it moved
// the record: look the digest up again). The Record's slices are its own.
func (s *Storage) Read(loc Location) (Record, error) {
	var rec Record
	if loc.Size < MinFrame || loc.Size > MaxSize {
		return rec, fmt.Errorf("%w: %v: size outside [%d, %d]", ErrNotFound, loc, MinFrame, MaxSize)
	}
	buf := make([]byte, loc.Size)
	s.filesMu.RLock()
	lf := s.files[loc.File]
	if lf == nil || loc.Offset < HeaderSize || loc.Offset+uint64(loc.Size) > lf.end.Load() {
		s.filesMu.RUnlock()
		if s.closed.Load() {
			return rec, ErrClosed
		}
		return rec, fmt.Errorf("%w: %v is not in the log (removed by the defragmenter? look the digest up again)", ErrNotFound, loc)
	}
	_, err := lf.f.ReadAt(buf, int64(loc.Offset))
	s.filesMu.RUnlock()
	if err != nil {
		return rec, fmt.Errorf("storage: read %v: %w", loc, err)
	}
	n, err := DecodeRecord(buf, &rec)
	if err == nil && n != len(buf) {
		err = fmt.Errorf("%w: frame of %d bytes, location says %d", ErrCorrupt, n, len(buf))
	}
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return Record{}, fmt.Errorf("storage: read %v: %w", loc, err)
	}
	return rec, nil
}

// Release tells the storage that the record at loc is dead (overwritten
// or deleted in the index), for the live-byte accounting that drives
// Defrag. Call it once per dead record; a location in a file already
// removed is ignored. The accounting is saved by Close and restored by
// Open; after an unclean stop it is rebuilt by Scan plus the Release
// calls of the cold rebuild that follows it.
func (s *Storage) Release(loc Location) error {
	if err := s.mutating(); err != nil {
		return err
	}
	s.filesMu.RLock()
	if lf := s.files[loc.File]; lf != nil {
		lf.dead.Add(int64(loc.Size))
	}
	s.filesMu.RUnlock()
	return nil
}

// FileStats describes one log file.
type FileStats struct {
	ID       uint32 // file id, in the name log-XXXXXXXX.dat
	Order    uint64 // creation number: log order
	Size     uint64 // bytes in the file, header included
	Capacity uint64
	Dead     uint64 // bytes of released, tombstone and copied-away records
	Head     bool   // the file appends go to
}

// Live returns the bytes of records not known to be dead.
func (f FileStats) Live() uint64 {
	used := f.Size - HeaderSize
	return used - min(used, f.Dead)
}

// Files returns the log files in log order.
func (s *Storage) Files() []FileStats {
	s.mu.Lock()
	head := s.head
	s.mu.Unlock()
	s.filesMu.RLock()
	out := make([]FileStats, 0, len(s.files))
	for _, lf := range s.files {
		out = append(out, FileStats{ID: lf.id, Order: lf.order, Size: lf.end.Load(), Capacity: lf.capacity,
			Dead: uint64(max(0, lf.dead.Load())), Head: lf == head})
	}
	s.filesMu.RUnlock()
	slices.SortFunc(out, func(a, b FileStats) int { return cmp.Compare(a.Order, b.Order) })
	return out
}

// Close syncs the log, saves the accounting and the committed length in
// the state file (so that the next Open is clean), closes the files and
// releases the directory lock. It waits for a running Defrag pass to
// stop. Later calls return ErrClosed.
func (s *Storage) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	s.defragMu.Lock()
	defer s.defragMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.failed
	if err == nil {
		err = s.saveStateLocked()
	}
	s.closeFiles()
	s.dirf.Close()
	return err
}

// saveStateLocked syncs the head and writes the state file atomically.
func (s *Storage) saveStateLocked() error {
	if err := s.syncTo(s.head, s.head.end.Load()); err != nil {
		return err
	}
	st := &savedState{uuid: s.uuid, head: s.head.id, headEnd: s.head.end.Load(), nextSeq: s.nextSeq,
		nextOrder: s.nextOrder, unplaced: s.unplaced.Load(), dead: map[uint32]uint64{}}
	s.filesMu.RLock()
	for id, lf := range s.files {
		st.dead[id] = uint64(max(0, lf.dead.Load()))
	}
	s.filesMu.RUnlock()
	tmp := filepath.Join(s.dir, stateName+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("storage: save state: %w", err)
	}
	_, err = f.Write(st.encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, stateName))
	}
	if err == nil {
		err = s.dirf.Sync()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: save state (the next Open will be unclean): %w", err)
	}
	return nil
}

func (s *Storage) closeFiles() {
	s.filesMu.Lock()
	defer s.filesMu.Unlock()
	for id, lf := range s.files {
		lf.f.Close()
		delete(s.files, id)
	}
}
