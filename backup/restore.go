package backup

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/procid"
	"github.com/zeebo/xxh3"
)

// reader is an opened backup directory whose manifest has been checked.
type reader struct {
	dir   string
	m     *Manifest
	files []*os.File // per segment
	// stored holds, per segment and chunk, the CRC-32C of the stored
	// bytes as verify read them: the restore's second read of a chunk is
	// checked against it (a chunk that changed since it was verified is
	// refused) without hashing it twice.
	stored [][]uint32

	mu   sync.Mutex
	idle []*worker // workers (decoders, buffers) kept between parallel runs
}

// worker returns an idle worker or a new one.
func (r *reader) worker() *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.idle); n > 0 {
		w := r.idle[n-1]
		r.idle = r.idle[:n-1]
		return w
	}
	return newWorker(r.m)
}

func (r *reader) putWorker(w *worker) {
	r.mu.Lock()
	r.idle = append(r.idle, w)
	r.mu.Unlock()
}

// openBackup reads and validates the manifest of dir, refuses foreign
// files, and opens every data file, checking its size.
func openBackup(dir string) (*reader, error) {
	dir = filepath.Clean(dir)
	if strings.Contains(filepath.Base(dir), partialMarker) {
		return nil, fail(ErrPartial, dir, "this is the temporary directory of a backup that never finished; delete it and back up again")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fail(ErrIO, dir, "no backup directory: %v", err)
	}
	if !fi.IsDir() {
		return nil, fail(ErrMissing, dir, "not a directory")
	}
	b, err := readSmallFile(filepath.Join(dir, ManifestName), maxManifest)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, err
	}
	if err := checkDirEntries(dir, m); err != nil {
		return nil, err
	}
	r := &reader{dir: dir, m: m}
	for _, s := range m.Segments {
		r.stored = append(r.stored, make([]uint32, len(s.Chunks)))
		p := filepath.Join(dir, s.File)
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			r.close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fail(ErrMissing, p, "the manifest lists it for %s", s.Name())
			}
			return nil, fail(ErrIO, p, "%v", err)
		}
		r.files = append(r.files, f)
		st, err := f.Stat()
		if err != nil {
			r.close()
			return nil, fail(ErrIO, p, "%v", err)
		}
		switch {
		case !st.Mode().IsRegular():
			r.close()
			return nil, fail(ErrForeign, p, "not a regular file")
		case uint64(st.Size()) < s.DataSize:
			r.close()
			return nil, fail(ErrTruncated, p, "%d bytes, the manifest records %d", st.Size(), s.DataSize)
		case uint64(st.Size()) > s.DataSize:
			r.close()
			return nil, fail(ErrManifest, p, "%d bytes, more than the %d the manifest records", st.Size(), s.DataSize)
		}
	}
	return r, nil
}

func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fail(ErrMissing, path, "no manifest: not a backup, or a backup that never finished")
		}
		return nil, fail(ErrIO, path, "%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fail(ErrIO, path, "%v", err)
	}
	if int64(len(b)) > limit {
		return nil, fail(ErrManifest, path, "larger than %d bytes", limit)
	}
	return b, nil
}

func (r *reader) close() {
	for _, f := range r.files {
		f.Close()
	}
	for _, w := range r.idle {
		w.close()
	}
	r.idle = nil
}

// worker holds one goroutine's decoder and buffers.
type worker struct {
	dec  *zstd.Decoder
	in   []byte
	out  []byte
	comp Compression
}

func newWorker(m *Manifest) *worker {
	w := &worker{comp: m.Compression}
	if m.Compression == Zstd {
		w.dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(m.ChunkSize+1), zstd.WithDecoderLowmem(true))
	}
	return w
}

func (w *worker) close() {
	if w.dec != nil {
		w.dec.Close()
	}
}

// chunk reads chunk j of segment si, decompresses it into dst (len(dst)
// == the chunk's Len; nil: a buffer of the worker) and checks its length
// and XXH3-128, recording the CRC-32C of its stored bytes. With again, it
// checks the stored bytes against that CRC instead of the XXH3-128 (the
// chunk was verified before: this is the restore's second read). It
// returns the chunk's bytes.
func (r *reader) chunk(w *worker, si, j int, dst []byte, again bool) ([]byte, error) {
	s := &r.m.Segments[si]
	c := s.Chunks[j]
	name := filepath.Join(r.dir, s.File)
	if dst == nil {
		if uint64(cap(w.out)) < c.Len {
			w.out = make([]byte, r.m.ChunkSize)
		}
		dst = w.out[:c.Len]
	}
	var got []byte
	switch r.m.Compression {
	case None:
		if n, err := r.files[si].ReadAt(dst, int64(c.FileOff)); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fail(ErrTruncated, name, "chunk %d: %d of %d bytes", j, n, c.Len)
			}
			return nil, fail(ErrIO, name, "chunk %d: %v", j, err)
		}
		got = dst
		if err := r.storedSum(si, j, dst, again); err != nil {
			return nil, err
		}
		if again {
			return got, nil
		}
	case Zstd:
		if uint64(cap(w.in)) < c.FileLen {
			w.in = make([]byte, maxStored(r.m.ChunkSize))
		}
		in := w.in[:c.FileLen]
		if n, err := r.files[si].ReadAt(in, int64(c.FileOff)); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fail(ErrTruncated, name, "chunk %d: %d of %d bytes", j, n, c.FileLen)
			}
			return nil, fail(ErrIO, name, "chunk %d: %v", j, err)
		}
		if err := r.storedSum(si, j, in, again); err != nil {
			return nil, err
		}
		out, err := w.dec.DecodeAll(in, dst[:0])
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
				return nil, fail(ErrLength, name, "chunk %d decompresses to more than its %d bytes", j, c.Len)
			}
			return nil, fail(ErrChecksum, name, "chunk %d (segment bytes %d–%d) does not decompress: %v", j, c.Off, c.Off+c.Len, err)
		}
		if uint64(len(out)) != c.Len {
			return nil, fail(ErrLength, name, "chunk %d decompresses to %d bytes, the manifest records %d", j, len(out), c.Len)
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
		got = dst
		if again {
			return got, nil
		}
	}
	sum := xxh3.Hash128(got).Bytes()
	if hex.EncodeToString(sum[:]) != c.XXH3 {
		return nil, fail(ErrChecksum, name, "chunk %d (segment bytes %d–%d of %s): XXH3-128 %x, the manifest records %s",
			j, c.Off, c.Off+c.Len, s.Name(), sum, c.XXH3)
	}
	return got, nil
}

// parallel runs fn over n items on opts.Workers goroutines, each with its
// own worker, and returns the first error (the others stop early).
// storedSum records (first read) or checks (again) the CRC-32C of the
// stored bytes b of chunk j of segment si.
func (r *reader) storedSum(si, j int, b []byte, again bool) error {
	sum := crc32.Checksum(b, castagnoli)
	if !again {
		r.stored[si][j] = sum
		return nil
	}
	if r.stored[si][j] != sum {
		s := &r.m.Segments[si]
		return fail(ErrChecksum, filepath.Join(r.dir, s.File), "chunk %d changed since it was verified (CRC-32C %08x, verified %08x)", j, sum, r.stored[si][j])
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (r *reader) parallel(ctx context.Context, workers, n int, fn func(w *worker, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := r.worker()
			defer r.putWorker(w)
			for i := range items {
				if err := fn(w, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case items <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(items)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

type chunkRef struct{ seg, chunk int }

func (r *reader) allChunks() []chunkRef {
	var out []chunkRef
	for si, s := range r.m.Segments {
		for j := range s.Chunks {
			out = append(out, chunkRef{si, j})
		}
	}
	return out
}

// verify checks every chunk.
func (r *reader) verify(ctx context.Context, opts *Options, prog *progress) error {
	refs := r.allChunks()
	var mu sync.Mutex
	return r.parallel(ctx, opts.Workers, len(refs), func(w *worker, i int) error {
		c := refs[i]
		if _, err := r.chunk(w, c.seg, c.chunk, nil, false); err != nil {
			return err
		}
		mu.Lock()
		prog.add(r.m.Segments[c.seg].Chunks[c.chunk].Len)
		mu.Unlock()
		return nil
	})
}

// Verify makes every check Restore makes before it creates anything — the
// manifest's checksum, version and contents, no foreign files, every data
// file's size and every chunk's length and XXH3-128 — and returns the
// manifest. It creates nothing.
func Verify(ctx context.Context, dir string, opts Options) (*Manifest, error) {
	r, err := openWith(dir, &opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := r.verify(ctx, &opts, &progress{fn: opts.Progress, total: r.m.total()}); err != nil {
		return nil, err
	}
	return r.m, nil
}

// openWith completes opts and opens the backup in dir.
func openWith(dir string, opts *Options) (*reader, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return openBackup(dir)
}

func (m *Manifest) total() uint64 {
	var t uint64
	for _, s := range m.Segments {
		t += s.Size
	}
	return t
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Manifest *Manifest
	Replaced []string // targets that existed and were replaced (Force)
	Bytes    uint64
	Duration time.Duration
}

// target is a segment being restored.
type target struct {
	si    int
	desc  *Segment
	loc   arena.Location
	seg   *arena.Segment
	lease *lease.Lease
	state uint64 // the saved header state word, written last
}

// Restore recreates the segments saved in dir. Before it creates anything
// it verifies the manifest and every chunk (as Verify), refuses targets
// that exist (naming them; Options.Force replaces them unless attached),
// and checks free memory (SysV: available memory, kernel.shmall and
// shmmax; files: their file systems). It creates each index main segment
// first, claims it (a process opening it waits) and takes its writer
// lease (a writer starting meanwhile refuses), restores the other segments,
// then the main segments' contents, and writes their clean-shutdown state
// last, so that a restore that stops anywhere before leaves nothing that
// starts warm. On failure it removes everything it created. Owners, groups
// and modes are restored (another owner needs the privilege to chown).
func Restore(ctx context.Context, dir string, opts Options) (*RestoreResult, error) {
	start := time.Now()
	r, err := openWith(dir, &opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	m := r.m
	ts := make([]*target, len(m.Segments))
	var existing []string
	for i := range m.Segments {
		d := &m.Segments[i]
		loc, err := d.Location()
		if err != nil {
			return nil, fail(ErrManifest, ManifestName, "segment %d: %v", i, err)
		}
		ts[i] = &target{si: i, desc: d, loc: loc}
		st, err := arena.StatOf(loc)
		switch {
		case err == nil:
			if opts.Force && st.Attached > 0 {
				return nil, fail(ErrAttached, loc.String(), "exists and is attached by %d process(es): stop them before replacing it", st.Attached)
			}
			existing = append(existing, loc.String())
		case !errors.Is(err, arena.ErrNotFound):
			return nil, fail(ErrIO, loc.String(), "%v", err)
		}
	}
	if len(existing) > 0 && !opts.Force {
		return nil, fail(ErrExists, strings.Join(existing, ", "), "the target segment(s) exist; remove them (shmctl rm) or restore with --force to replace them")
	}
	// Progress counts every byte twice: verified, then copied.
	prog := &progress{fn: opts.Progress, total: 2 * m.total()}
	if err := r.verify(ctx, &opts, prog); err != nil {
		return nil, err
	}
	if opts.afterVerify != nil {
		opts.afterVerify()
	}
	if err := checkRoom(m, &opts); err != nil {
		return nil, err
	}
	for _, t := range ts {
		if _, err := arena.StatOf(t.loc); err == nil {
			if err := arena.Remove(t.loc, arena.RemoveOptions{}); err != nil {
				kind := ErrIO
				switch {
				case errors.Is(err, arena.ErrInUse):
					kind = ErrAttached
				case errors.Is(err, layout.ErrNotOurs):
					kind = ErrNotShmkit
				}
				return nil, fail(kind, t.loc.String(), "replacing it: %v", err)
			}
		}
	}

	var created []*target
	ok := false
	defer func() {
		for _, t := range created {
			if t.lease != nil {
				t.lease.Release()
			}
			t.seg.Close()
			if !ok {
				arena.Remove(t.loc, arena.RemoveOptions{Force: true})
			}
		}
	}()
	create := func(t *target) error {
		seg, err := arena.CreateRaw(t.loc, t.desc.Size, t.desc.Mode)
		if err != nil {
			if errors.Is(err, arena.ErrExists) {
				return fail(ErrExists, t.loc.String(), "created by another process during the restore: %v", err)
			}
			return fail(ErrIO, t.loc.String(), "create: %v", err)
		}
		t.seg = seg
		created = append(created, t)
		// Claim it as being initialized by this process: anyone opening
		// it waits (and takes over only once this process is dead).
		var slot procid.Slot
		if reg, err := seg.Liveness(); err == nil {
			slot, _ = reg.Register()
		}
		w := layout.InitWord(uint32(os.Getpid()), slot)
		if !seg.CAS64(layout.OffState, 0, w) {
			return fail(ErrExists, t.loc.String(), "claimed by another process during the restore")
		}
		return nil
	}
	var mains, others []*target
	for _, t := range ts {
		if t.desc.Role == RoleIndexMain {
			mains = append(mains, t)
		} else {
			others = append(others, t)
		}
	}
	w := r.worker()
	defer r.putWorker(w)
	for _, t := range mains {
		if err := create(t); err != nil {
			return nil, err
		}
		// The saved lease record (its epoch stays above the one the
		// saved writer gate carries), then this process takes it.
		if err := r.restoreRange(w, t, t.desc.LeaseOffset, t.desc.LeaseSize); err != nil {
			return nil, err
		}
		l, err := lease.New(t.seg, arena.Offset(t.desc.LeaseOffset), lease.Config{Threshold: opts.LeaseThreshold, Logger: opts.Logger})
		if err != nil {
			return nil, fail(ErrIO, t.loc.String(), "writer lease: %v", err)
		}
		if _, err := l.TryAcquire(); err != nil {
			return nil, fail(ErrWriterRunning, t.loc.String(), "writer lease: %v", err)
		}
		t.lease = l
	}
	if len(mains) == 0 && len(others) > 0 {
		if err := create(others[0]); err != nil {
			return nil, err
		}
	}
	opts.Failpoints.Hit(FailRestoreClaimed)
	for _, t := range others {
		if t.seg == nil {
			if err := create(t); err != nil {
				return nil, err
			}
		}
		if err := r.restoreBody(ctx, &opts, t, prog); err != nil {
			return nil, err
		}
		if err := finish(t); err != nil {
			return nil, err
		}
		opts.Failpoints.Hit(FailRestoreSegment)
	}
	for _, t := range mains {
		if err := r.restoreBody(ctx, &opts, t, prog); err != nil {
			return nil, err
		}
		opts.Failpoints.Hit(FailRestoreMain)
		if err := finish(t); err != nil {
			return nil, err
		}
	}
	ok = true
	return &RestoreResult{Manifest: m, Replaced: existing, Bytes: m.total(), Duration: time.Since(start)}, nil
}

// finish restores the owner and mode of t and then its saved state word
// (for an index main segment: clean shutdown).
func finish(t *target) error {
	if err := arena.SetOwnership(t.loc, arena.Ownership{UID: t.desc.UID, GID: t.desc.GID, Mode: t.desc.Mode}); err != nil {
		return fail(ErrIO, t.loc.String(), "restore owner %d:%d mode %#o: %v", t.desc.UID, t.desc.GID, t.desc.Mode, err)
	}
	t.seg.Store64(layout.OffState, t.state)
	return nil
}

// skips are the byte ranges of t that restoreBody leaves alone: the
// state word (written last) and an index's lease record (written first).
func (t *target) skips() []patch {
	ps := []patch{{off: layout.OffState, data: make([]byte, 8)}}
	if t.desc.Role == RoleIndexMain {
		ps = append(ps, patch{off: t.desc.LeaseOffset, data: make([]byte, t.desc.LeaseSize)})
	}
	return ps
}

// restoreBody writes every chunk of t into its memory, checking each
// again, except the skipped ranges; it records the saved state word.
func (r *reader) restoreBody(ctx context.Context, opts *Options, t *target, prog *progress) error {
	mem, err := t.seg.QuiescentBytes(0, t.desc.Size)
	if err != nil {
		return fail(ErrIO, t.loc.String(), "%v", err)
	}
	skips := t.skips()
	// A file segment is written through its file (see
	// arena.Segment.QuiescentWriteAt): each chunk is read into the
	// worker's buffer, then written. Into SysV memory the chunk is read
	// straight into the mapping.
	st, err := t.seg.Stat()
	if err != nil {
		return fail(ErrIO, t.loc.String(), "%v", err)
	}
	viaFile := st.Path != ""
	var mu sync.Mutex
	return r.parallel(ctx, opts.Workers, len(t.desc.Chunks), func(w *worker, j int) error {
		c := t.desc.Chunks[j]
		dst := mem[c.Off : c.Off+c.Len : c.Off+c.Len]
		if !overlaps(skips, c.Off, c.Len) && viaFile {
			b, err := r.chunk(w, t.si, j, nil, true)
			if err != nil {
				return err
			}
			if err := t.seg.QuiescentWriteAt(b, c.Off); err != nil {
				return fail(ErrIO, t.loc.String(), "%v", err)
			}
		} else if !overlaps(skips, c.Off, c.Len) {
			if _, err := r.chunk(w, t.si, j, dst, true); err != nil {
				return err
			}
		} else {
			b, err := r.chunk(w, t.si, j, nil, true)
			if err != nil {
				return err
			}
			if c.Off <= layout.OffState && layout.OffState+8 <= c.Off+c.Len {
				t.state = binary.NativeEndian.Uint64(b[layout.OffState-c.Off:])
			}
			copyExcept(dst, b, c.Off, skips)
		}
		mu.Lock()
		prog.add(c.Len)
		mu.Unlock()
		return nil
	})
}

// copyExcept copies src to dst (both the segment bytes from off) except
// the ranges of skips.
func copyExcept(dst, src []byte, off uint64, skips []patch) {
	pos := uint64(0)
	n := uint64(len(src))
	for pos < n {
		next := n
		skipTo := pos
		for _, s := range skips {
			lo, hi := s.off, s.off+uint64(len(s.data))
			if hi <= off+pos || lo >= off+n {
				continue
			}
			if lo <= off+pos {
				skipTo = max(skipTo, hi-off)
			} else {
				next = min(next, lo-off)
			}
		}
		if skipTo > pos {
			pos = min(skipTo, n)
			continue
		}
		copy(dst[pos:next], src[pos:next])
		pos = next
	}
}

// restoreRange writes bytes [off, off+n) of t from the backup (checking
// the chunks they lie in).
func (r *reader) restoreRange(w *worker, t *target, off, n uint64) error {
	mem, err := t.seg.QuiescentBytes(off, n)
	if err != nil {
		return fail(ErrIO, t.loc.String(), "%v", err)
	}
	for j, c := range t.desc.Chunks {
		lo, hi := max(off, c.Off), min(off+n, c.Off+c.Len)
		if lo >= hi {
			continue
		}
		b, err := r.chunk(w, t.si, j, nil, true)
		if err != nil {
			return err
		}
		copy(mem[lo-off:hi-off], b[lo-c.Off:hi-c.Off])
	}
	return nil
}

// checkRoom refuses a restore whose segments do not fit in free memory
// (SysV) or their file systems (files).
func checkRoom(m *Manifest, opts *Options) error {
	var sysv uint64
	files := map[string]uint64{}
	var largest uint64
	var largestName string
	for _, s := range m.Segments {
		switch s.Kind {
		case "sysv":
			sysv += s.Size
			if s.Size > largest {
				largest, largestName = s.Size, s.Name()
			}
		case "file":
			files[filepath.Dir(s.Path)] += s.Size
		}
	}
	if sysv > 0 {
		room, maxSeg, err := opts.probe.sysvRoom()
		if err != nil {
			return fail(ErrIO, "memory", "%v", err)
		}
		if largest > maxSeg {
			return fail(ErrNoSpace, largestName, "%s exceeds kernel.shmmax (%s)", human(largest), human(maxSeg))
		}
		if sysv > room {
			return fail(ErrNoSpace, "memory", "the SysV segments need %s, only %s is available (MemAvailable, kernel.shmall)", human(sysv), human(room))
		}
	}
	for d, need := range files {
		free, err := opts.probe.freeDisk(d)
		if err != nil {
			return fail(ErrIO, d, "free space: %v (does the directory exist?)", err)
		}
		if need > free {
			return fail(ErrNoSpace, d, "the file segments need %s, the file system has %s free", human(need), human(free))
		}
	}
	return nil
}
