package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/zeebo/xxh3"
)

// Sizes.
const (
	// DefaultChunkSize is the chunk size unless Options.ChunkSize says
	// otherwise: large enough that per-chunk costs vanish, small enough
	// that a 256 MiB segment keeps every core busy.
	DefaultChunkSize = 8 << 20
	// MinChunkSize and MaxChunkSize bound Options.ChunkSize (and what a
	// manifest may record).
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
	// MaxSegmentSize is the largest segment a manifest may record (64 TiB).
	MaxSegmentSize = 1 << 46
	maxSegments    = 4096
)

// Failpoints (see package failpoint) of Backup and Restore.
const (
	// FailBackupChunk: the first chunk of a segment's data file is
	// written, the rest is not.
	FailBackupChunk = "backup.chunk"
	// FailBackupSegment: a segment's data file is complete and synced.
	FailBackupSegment = "backup.segment"
	// FailBackupManifest: the manifest is written and synced in the
	// temporary directory, which is not renamed yet.
	FailBackupManifest = "backup.manifest"
	// FailRestoreClaimed: the index main segments (or, without an index,
	// the first segment) are created and claimed, nothing is written.
	FailRestoreClaimed = "restore.claimed"
	// FailRestoreSegment: a segment other than an index main segment is
	// restored completely.
	FailRestoreSegment = "restore.segment"
	// FailRestoreMain: an index main segment is written except its
	// clean-shutdown state.
	FailRestoreMain = "restore.main"
)

// Options configure Backup, Restore and Verify.
type Options struct {
	// Compression of the chunks (Backup); default None.
	Compression Compression
	// ChunkSize is the chunk size of a backup, MinChunkSize–MaxChunkSize;
	// default DefaultChunkSize.
	ChunkSize uint64
	// Workers is how many chunks are processed at once; default
	// GOMAXPROCS.
	Workers int
	// Force: Restore replaces existing targets (after checking that no
	// process has them attached).
	Force bool
	// Progress, if not nil, is called from one goroutine after every chunk
	// with the bytes of segment memory done so far and the total.
	Progress func(done, total uint64)
	// Tool is recorded in the manifest; default "shmkit/backup" and the
	// module version.
	Tool string
	// LeaseThreshold is the heartbeat threshold of the writer leases held
	// (default lease.DefaultThreshold; use the index's).
	LeaseThreshold time.Duration
	// Failpoints arms the failpoints above (tests).
	Failpoints *failpoint.Set
	// Logger; default slog.Default().
	Logger *slog.Logger

	// probe replaces the free memory and disk figures (tests).
	probe spaceProbe
	// afterVerify, if set, runs between Restore's verification and its
	// first creation (tests: a backup changed in between).
	afterVerify func()
}

func (o *Options) defaults() error {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < MinChunkSize || o.ChunkSize > MaxChunkSize {
		return fmt.Errorf("backup: chunk size %d outside %d–%d", o.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if o.Compression > Zstd {
		return fmt.Errorf("backup: unknown compression %d", o.Compression)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Tool == "" {
		o.Tool = "shmkit/backup"
		if bi, ok := debug.ReadBuildInfo(); ok {
			o.Tool += " " + bi.Main.Version
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LeaseThreshold <= 0 {
		o.LeaseThreshold = lease.DefaultThreshold
	}
	if o.probe == nil {
		o.probe = sysProbe{}
	}
	return nil
}

// Source says which segments to back up.
type Source struct {
	// Indexes are the indexes to save, each given by its Store, Instance
	// and Namespace (the other fields are not used): every block its main
	// segment records.
	Indexes []index.Config
	// Files are file segments, by path. A file that holds an index block
	// is handled as one (its writer lease is held, its main segment must
	// be cleanly shut down).
	Files []string
	// Keys are SysV segments, by key (an index block among them is
	// handled as one, as for Files).
	Keys []arena.Key
}

// FindIndexes returns the configurations of the indexes of instance in
// store whose main segment exists, for the namespaces listed (all 16 when
// namespaces is empty).
func FindIndexes(store index.Store, instance uint8, namespaces []uint8) ([]index.Config, error) {
	if len(namespaces) == 0 {
		for n := range uint8(16) {
			namespaces = append(namespaces, n)
		}
	}
	var out []index.Config
	for _, n := range namespaces {
		cfg := index.Config{Store: store, Instance: instance, Namespace: n}
		loc, err := index.BlockLocation(cfg, 0)
		if err != nil {
			return nil, err
		}
		if _, err := arena.StatOf(loc); err == nil {
			out = append(out, cfg)
		} else if !errors.Is(err, arena.ErrNotFound) {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	return out, nil
}

// FilesWithPrefix returns the regular files whose path starts with
// prefix ("/dev/shm/shmkit.cache" matches /dev/shm/shmkit.cache.b000; a
// prefix ending in "/" names a whole directory), sorted. Symbolic links
// are skipped.
func FilesWithPrefix(prefix string) ([]string, error) {
	dir, base := filepath.Split(prefix)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: prefix %q: %w", prefix, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base) && e.Type().IsRegular() {
			p, err := filepath.Abs(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// planned is one segment to back up.
type planned struct {
	loc  arena.Location
	desc Segment // the manifest entry, without chunks
}

// Plan describes what a backup would write.
type Plan struct {
	Segments []Segment // manifest entries without chunks
	Bytes    uint64    // segment bytes in all
	Chunks   int
	// ChunkSize is the chunk size the backup would use.
	ChunkSize uint64
	// Need is the disk space the backup needs at most (the data
	// uncompressed, plus the manifest).
	Need uint64
	// Free is the space available in the file system of the directory.
	Free uint64
}

// Analyze checks src as Backup would (and refuses what it would refuse)
// and says what would be written and the space needed in the file system
// of dir, without writing anything.
func Analyze(src Source, dir string, opts Options) (*Plan, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	segs, err := plan(src)
	if err != nil {
		return nil, err
	}
	p := &Plan{ChunkSize: opts.ChunkSize}
	for _, s := range segs {
		p.Segments = append(p.Segments, s.desc)
		p.Bytes += s.desc.Size
		p.Chunks += int((s.desc.Size + opts.ChunkSize - 1) / opts.ChunkSize)
	}
	p.Need = p.Bytes + manifestAllowance(p.Chunks)
	p.Free, err = opts.probe.freeDisk(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return nil, fail(ErrIO, dir, "free space: %v", err)
	}
	return p, nil
}

func manifestAllowance(chunks int) uint64 { return 64<<10 + uint64(chunks)*512 }

// plan lists the segments of src with their manifest entries and refuses
// attached, unclean or foreign ones, naming each.
func plan(src Source) ([]planned, error) {
	var locs []arena.Location
	for _, cfg := range src.Indexes {
		blocks, err := index.SavedBlocks(cfg)
		if err != nil {
			if errors.Is(err, arena.ErrNotFound) {
				return nil, fail(ErrNoSegments, fmt.Sprintf("index instance %d namespace %d", cfg.Instance, cfg.Namespace), "%v", err)
			}
			return nil, fail(ErrNotShmkit, fmt.Sprintf("index instance %d namespace %d", cfg.Instance, cfg.Namespace), "%v", err)
		}
		locs = append(locs, blocks...)
	}
	for _, p := range src.Files {
		locs = append(locs, arena.File(p))
	}
	for _, k := range src.Keys {
		locs = append(locs, arena.SysV(k))
	}
	if len(locs) == 0 {
		return nil, fail(ErrNoSegments, "source", "no segments named")
	}
	if len(locs) > maxSegments {
		return nil, fail(ErrNoSegments, "source", "%d segments, at most %d per backup", len(locs), maxSegments)
	}
	var out []planned
	var problems []string
	var kind error
	refuse := func(k error, format string, args ...any) {
		if kind == nil {
			kind = k
		}
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	for i, loc := range locs {
		if seen[loc.String()] {
			continue
		}
		seen[loc.String()] = true
		d, err := describe(loc)
		if err != nil {
			var be *Error
			if errors.As(err, &be) {
				refuse(be.Kind, "%s: %s", loc, be.Detail)
				continue
			}
			return nil, fail(ErrIO, loc.String(), "%v", err)
		}
		d.File = dataFileName(i)
		out = append(out, planned{loc: loc, desc: d})
	}
	if len(problems) > 0 {
		return nil, fail(kind, "source", "refusing to back up %d segment(s): %s", len(problems), strings.Join(problems, "; "))
	}
	for i := range out { // data file names follow the manifest order
		out[i].desc.File = dataFileName(i)
	}
	return out, nil
}

// describe returns the manifest entry of the segment at loc, or an *Error
// refusing it (attached, not cleanly shut down, not shmkit's).
func describe(loc arena.Location) (Segment, error) {
	st, err := arena.StatOf(loc)
	if err != nil {
		return Segment{}, err
	}
	if st.Attached != 0 {
		return Segment{}, fail(ErrAttached, loc.String(), "attached by %d process(es); stop them first", st.Attached)
	}
	own, err := arena.OwnershipOf(loc)
	if err != nil {
		return Segment{}, err
	}
	seg, err := arena.Inspect(loc)
	if err != nil {
		if errors.Is(err, layout.ErrNotReady) {
			return Segment{}, fail(ErrNotClean, loc.String(), "%v", err)
		}
		return Segment{}, fail(ErrNotShmkit, loc.String(), "%v", err)
	}
	defer seg.Close()
	h := seg.Header()
	d := Segment{Size: seg.Len(), UID: own.UID, GID: own.GID, Mode: own.Mode,
		LayoutMajor: h.Major, LayoutMinor: h.Minor, SegKind: h.Kind.String(), State: h.State.String(),
		Fingerprint: map[string]uint64{}, Role: RolePlain}
	for _, f := range h.Fields {
		d.Fingerprint[f.Name] = f.Value
	}
	switch st.Key {
	case 0:
		d.Kind, d.Path = "file", st.Path
	default:
		d.Kind, d.Key = "sysv", st.Key.String()
	}
	if h.Kind == layout.KindIndex {
		inst, _ := h.Field("instance")
		ns, _ := h.Field("namespace")
		b, _ := h.Field("block")
		d.Instance, d.Namespace, d.Block = uint8(inst), uint8(ns), int(b)
		d.Role = RoleIndexStage
		if b == 0 {
			d.Role = RoleIndexMain
			sec, ok := h.Section(index.LeaseSection)
			if !ok || sec.Size < lease.Size {
				return Segment{}, fail(ErrNotShmkit, loc.String(), "index main segment without a %q section", index.LeaseSection)
			}
			d.LeaseOffset, d.LeaseSize = sec.Offset, lease.Size
		}
	}
	switch {
	case d.Role == RoleIndexMain && h.State != layout.StateClean:
		return Segment{}, fail(ErrNotClean, loc.String(), "index main segment in state %s, not clean shutdown: its writer is running or crashed; stop it cleanly (or let a writer start and stop cleanly) first", h.State)
	case h.State != layout.StateClean && h.State != layout.StateReady:
		return Segment{}, fail(ErrNotClean, loc.String(), "state %s", h.State)
	}
	return d, nil
}

// Result describes a finished backup.
type Result struct {
	Dir      string
	Manifest *Manifest
	Bytes    uint64 // segment bytes saved
	Stored   uint64 // bytes of the data files
	Duration time.Duration
}

// held is a segment attached for the backup, with its lease if it has one.
type held struct {
	p     planned
	seg   *arena.Segment
	lease *lease.Lease
	image []byte // the lease record as it was before this backup took it
}

// Backup saves the segments of src into the new directory dir, all or
// nothing: it refuses segments that are attached or not cleanly shut
// down (naming each), holds the writer lease of every index for the whole
// backup, writes each segment as independently checksummed chunks (in
// parallel, optionally compressed) into a temporary directory next to
// dir, writes the manifest last, syncs files and directory, and renames
// the directory to dir. dir must not exist.
func Backup(ctx context.Context, src Source, dir string, opts Options) (*Result, error) {
	start := time.Now()
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if strings.Contains(filepath.Base(dir), partialMarker) {
		return nil, fail(ErrExists, dir, "a backup directory's name may not contain %q (it marks unfinished backups)", partialMarker)
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, fail(ErrExists, dir, "the backup directory exists; give a new one")
	}
	segs, err := plan(src)
	if err != nil {
		return nil, err
	}
	var total uint64
	chunks := 0
	for _, s := range segs {
		total += s.desc.Size
		chunks += int((s.desc.Size + opts.ChunkSize - 1) / opts.ChunkSize)
	}
	parent := filepath.Dir(dir)
	free, err := opts.probe.freeDisk(parent)
	if err != nil {
		return nil, fail(ErrIO, parent, "free space: %v", err)
	}
	if need := total + manifestAllowance(chunks); free < need {
		return nil, fail(ErrNoSpace, parent, "the backup needs up to %s, the file system has %s free", human(need), human(free))
	}

	hs, err := hold(segs, &opts)
	defer releaseAll(hs)
	if err != nil {
		return nil, err
	}
	stop := renewLeases(hs, opts.LeaseThreshold, opts.Logger)
	defer stop()

	tmp := filepath.Join(parent, fmt.Sprintf(".%s%s%d", filepath.Base(dir), partialMarker, os.Getpid()))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fail(ErrIO, tmp, "%v", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	host, _ := os.Hostname()
	m := &Manifest{Version: FormatVersion, Tool: opts.Tool, Host: host, Created: time.Now().UTC(),
		Compression: opts.Compression, ChunkSize: opts.ChunkSize}
	prog := &progress{fn: opts.Progress, total: total}
	var stored uint64
	pool := newEncPool(&opts)
	defer pool.close()
	for _, h := range hs {
		d := h.p.desc
		var patches []patch
		if h.lease != nil {
			patches = append(patches, patch{off: d.LeaseOffset, data: h.image})
		}
		cs, size, err := writeSegment(ctx, h.seg, filepath.Join(tmp, d.File), patches, &opts, pool, prog)
		if err != nil {
			return nil, err
		}
		d.Chunks, d.DataSize = cs, size
		stored += size
		m.Segments = append(m.Segments, d)
		opts.Failpoints.Hit(FailBackupSegment)
	}
	// All data files synced at once: one after the other, each file's
	// fsync would wait for the disk while the next could be written.
	if err := syncFiles(tmp, m.Segments, opts.Workers); err != nil {
		return nil, err
	}
	// Nobody may have attached a segment while it was copied.
	for _, h := range hs {
		st, err := h.seg.Stat()
		if err != nil {
			return nil, fail(ErrIO, h.p.loc.String(), "%v", err)
		}
		if st.Attached > 1 {
			return nil, fail(ErrAttached, h.p.loc.String(), "a process attached it during the backup; back up again once it is stopped")
		}
	}
	mb, err := encodeManifest(m)
	if err != nil {
		return nil, fail(ErrIO, tmp, "manifest: %v", err)
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestName), mb); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	opts.Failpoints.Hit(FailBackupManifest)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fail(ErrIO, dir, "rename %s: %v", tmp, err)
	}
	done = true
	if err := syncDir(parent); err != nil {
		return nil, err
	}
	return &Result{Dir: dir, Manifest: m, Bytes: total, Stored: stored, Duration: time.Since(start)}, nil
}

// hold attaches every planned segment, taking the writer lease of each
// index main segment first, and checks again that each is unattached and
// clean now that nobody can start under it.
func hold(segs []planned, opts *Options) ([]*held, error) {
	var hs []*held
	order := slices.Clone(segs)
	// Main segments first: once their leases are held no writer can
	// start and change a stage.
	slices.SortStableFunc(order, func(a, b planned) int {
		return boolInt(b.desc.Role == RoleIndexMain) - boolInt(a.desc.Role == RoleIndexMain)
	})
	for _, p := range order {
		seg, err := arena.Inspect(p.loc)
		if err != nil {
			return hs, fail(ErrIO, p.loc.String(), "attach: %v", err)
		}
		h := &held{p: p, seg: seg}
		hs = append(hs, h)
		if p.desc.Role == RoleIndexMain {
			img, err := seg.QuiescentBytes(p.desc.LeaseOffset, p.desc.LeaseSize)
			if err != nil {
				return hs, fail(ErrIO, p.loc.String(), "%v", err)
			}
			h.image = slices.Clone(img)
			l, err := lease.New(seg, arena.Offset(p.desc.LeaseOffset), lease.Config{Threshold: opts.LeaseThreshold, Logger: opts.Logger})
			if err != nil {
				return hs, fail(ErrIO, p.loc.String(), "writer lease: %v", err)
			}
			if _, err := l.TryAcquire(); err != nil {
				o := l.Owner()
				return hs, fail(ErrWriterRunning, p.loc.String(), "writer pid %d (epoch %d) holds the index: %v; stop it first", o.Identity.PID, o.Epoch, err)
			}
			h.lease = l
		}
		st, err := seg.Stat()
		if err != nil {
			return hs, fail(ErrIO, p.loc.String(), "%v", err)
		}
		if st.Attached > 1 {
			return hs, fail(ErrAttached, p.loc.String(), "attached by %d other process(es)", st.Attached-1)
		}
		if s := seg.State(); p.desc.Role == RoleIndexMain && s != layout.StateClean || s != layout.StateClean && s != layout.StateReady {
			return hs, fail(ErrNotClean, p.loc.String(), "state %s now", s)
		}
	}
	// Back to manifest order.
	slices.SortFunc(hs, func(a, b *held) int { return strings.Compare(a.p.desc.File, b.p.desc.File) })
	return hs, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func releaseAll(hs []*held) {
	for _, h := range hs {
		if h.lease != nil {
			h.lease.Release()
		}
		h.seg.Close()
	}
}

// renewLeases keeps the held leases' heartbeats fresh until stop.
func renewLeases(hs []*held, threshold time.Duration, log *slog.Logger) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(threshold / 4)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				for _, h := range hs {
					if h.lease != nil {
						if err := h.lease.Renew(); err != nil {
							log.Error("backup: writer lease lost", "segment", h.p.loc.String(), "err", err)
						}
					}
				}
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// patch replaces bytes of a segment in its backup.
type patch struct {
	off  uint64
	data []byte
}

// writeSegment writes the chunks of seg into a new file at path (synced
// later, with the others: syncFiles), returning the chunks and the file's
// size.
func writeSegment(ctx context.Context, seg *arena.Segment, path string, patches []patch, opts *Options, pool *encPool, prog *progress) ([]Chunk, uint64, error) {
	mem, err := seg.QuiescentBytes(0, seg.Len())
	if err != nil {
		return nil, 0, fail(ErrIO, seg.Location().String(), "%v", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, fail(ErrIO, path, "%v", err)
	}
	defer f.Close()
	size := uint64(len(mem))
	n := int((size + opts.ChunkSize - 1) / opts.ChunkSize)
	chunks := make([]Chunk, n)
	type result struct {
		data    []byte
		buf     []byte
		sum     [16]byte
		written bool  // by the worker (uncompressed: the file offset is the chunk's)
		err     error // of that write
		done    chan struct{}
	}
	res := make([]result, n)
	for j := range res {
		res[j].done = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bufs := pool.bufs
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := <-pool.encs
			defer func() { pool.encs <- enc }()
			var scratch []byte // this worker's: the patched copy when compressing
			for j := range jobs {
				r := &res[j]
				off := uint64(j) * opts.ChunkSize
				raw := mem[off:min(off+opts.ChunkSize, size)]
				patched := overlaps(patches, off, uint64(len(raw)))
				if patched {
					p := append(r.buf[:0], raw...)
					applyPatches(p, off, patches)
					r.buf, raw = p, p
				}
				r.sum = xxh3.Hash128(raw).Bytes()
				r.data = raw
				if enc != nil {
					if patched {
						r.buf, scratch = scratch, r.buf
					}
					out := enc.EncodeAll(raw, r.buf[:0])
					r.buf, r.data = out, out
				} else {
					// Uncompressed chunks lie at their own offsets: the
					// workers write them in parallel (one writer copying
					// into the page cache was the bottleneck).
					if _, err := f.WriteAt(raw, int64(off)); err != nil {
						r.err = fail(ErrIO, path, "%v", err)
					}
					r.written = true
				}
				close(r.done)
			}
		}()
	}
	go func() {
		defer close(jobs)
		for j := range n {
			var b []byte
			select {
			case b = <-bufs:
			case <-ctx.Done():
				return
			}
			res[j].buf = b
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	var foff uint64
	var werr error
	for j := range n {
		r := &res[j]
		select {
		case <-r.done:
		case <-ctx.Done():
			werr = ctx.Err()
		}
		if werr != nil {
			break
		}
		if r.written {
			if r.err != nil {
				werr = r.err
				break
			}
		} else if _, err := f.WriteAt(r.data, int64(foff)); err != nil {
			werr = fail(ErrIO, path, "%v", err)
			break
		}
		off := uint64(j) * opts.ChunkSize
		chunks[j] = Chunk{Off: off, Len: min(opts.ChunkSize, size-off), FileOff: foff, FileLen: uint64(len(r.data)), XXH3: hex.EncodeToString(r.sum[:])}
		foff += uint64(len(r.data))
		bufs <- r.buf
		r.buf, r.data = nil, nil
		prog.add(chunks[j].Len)
		if j == 0 {
			opts.Failpoints.Hit(FailBackupChunk)
		}
	}
	cancel()
	wg.Wait()
	if werr != nil {
		return nil, 0, werr
	}
	if err := f.Close(); err != nil {
		return nil, 0, fail(ErrIO, path, "%v", err)
	}
	return chunks, foff, nil
}

// encPool holds the encoders and chunk buffers of one Backup, shared by
// its segments (an index has up to 256 blocks: allocating them per
// segment cost more than the copying).
type encPool struct {
	encs chan *zstd.Encoder // Workers of them (nil without compression)
	bufs chan []byte        // 2×Workers: bounds the chunks in flight
}

func newEncPool(opts *Options) *encPool {
	p := &encPool{encs: make(chan *zstd.Encoder, opts.Workers), bufs: make(chan []byte, 2*opts.Workers)}
	for range opts.Workers {
		var enc *zstd.Encoder
		if opts.Compression == Zstd {
			enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		}
		p.encs <- enc
	}
	for range cap(p.bufs) {
		p.bufs <- nil
	}
	return p
}

// close releases the encoders (all back in the pool: every writeSegment
// has returned).
func (p *encPool) close() {
	for range cap(p.encs) {
		if enc := <-p.encs; enc != nil {
			enc.Close()
		}
	}
}

func overlaps(ps []patch, off, n uint64) bool {
	for _, p := range ps {
		if p.off < off+n && off < p.off+uint64(len(p.data)) {
			return true
		}
	}
	return false
}

// applyPatches writes the patches into b, which holds the segment bytes
// from off.
func applyPatches(b []byte, off uint64, ps []patch) {
	for _, p := range ps {
		lo, hi := max(p.off, off), min(p.off+uint64(len(p.data)), off+uint64(len(b)))
		if lo < hi {
			copy(b[lo-off:hi-off], p.data[lo-p.off:hi-p.off])
		}
	}
}

// progress reports bytes done to Options.Progress.
type progress struct {
	fn          func(done, total uint64)
	done, total uint64
}

func (p *progress) add(n uint64) {
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// syncFiles fsyncs the data files of segs in dir, workers at a time.
func syncFiles(dir string, segs []Segment, workers int) error {
	errs := make([]error, len(segs))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, s := range segs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := filepath.Join(dir, s.File)
			f, err := os.Open(p)
			if err != nil {
				errs[i] = fail(ErrIO, p, "%v", err)
				return
			}
			defer f.Close()
			if err := f.Sync(); err != nil {
				errs[i] = fail(ErrIO, p, "fsync: %v", err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(ErrIO, path, "%v", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fail(ErrIO, path, "%v", err)
	}
	if err := f.Sync(); err != nil {
		return fail(ErrIO, path, "fsync: %v", err)
	}
	if err := f.Close(); err != nil {
		return fail(ErrIO, path, "%v", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fail(ErrIO, dir, "%v", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fail(ErrIO, dir, "fsync: %v", err)
	}
	return nil
}

// human formats a byte count.
func human(n uint64) string {
	const u = 1024
	if n < u {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= u && i < 5 {
		v /= u
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i-1])
}
