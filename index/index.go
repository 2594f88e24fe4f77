package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
)

const (
	stateReady = layout.StateReady
	stateClean = layout.StateClean
)

// Mode says how an index started.
type Mode uint8

// Modes.
const (
	// Warm: the saved index was attached as it was.
	Warm Mode = iota + 1
	// Cold: the index was rebuilt through the rebuild function.
	Cold
)

// String returns "warm" or "cold".
func (m Mode) String() string {
	switch m {
	case Warm:
		return "warm"
	case Cold:
		return "cold"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ReasonKind says why a start was cold (ReasonNone for a warm one).
type ReasonKind uint8

// Reason kinds, one per trigger of a cold start.
const (
	ReasonNone ReasonKind = iota
	// ReasonForced: Config.ForceCold.
	ReasonForced
	// ReasonSegmentsMissing: the main segment or a stage is gone (e.g.
	// after a reboot).
	ReasonSegmentsMissing
	// ReasonFingerprint: a fingerprint field (or the layout version)
	// differs from the configuration; Field, Saved and Config say which.
	ReasonFingerprint
	// ReasonUnclean: the last writer did not shut down cleanly (it
	// crashed or was killed after mutating).
	ReasonUnclean
	// ReasonStorageChanged: the storage identity (UUID or committed
	// length) differs from the one recorded at the clean shutdown: the
	// storage was wiped, replaced or written without the index.
	ReasonStorageChanged
	// ReasonDamaged: the saved structures failed a check (header, meta,
	// clean seal, or Check with Config.CheckOnWarm).
	ReasonDamaged
)

// String names the trigger, e.g. "unclean shutdown".
func (k ReasonKind) String() string {
	switch k {
	case ReasonNone:
		return "none"
	case ReasonForced:
		return "forced"
	case ReasonSegmentsMissing:
		return "segments missing"
	case ReasonFingerprint:
		return "fingerprint changed"
	case ReasonUnclean:
		return "unclean shutdown"
	case ReasonStorageChanged:
		return "storage changed"
	case ReasonDamaged:
		return "index damaged"
	}
	return fmt.Sprintf("reason(%d)", uint8(k))
}

// Reason says why a start was cold.
type Reason struct {
	Kind ReasonKind
	// Field names the fingerprint field or storage property that differs
	// (e.g. "partition-tree-sprigs", "storage-uuid"); Saved and Config
	// are its values in the saved index and now.
	Field, Saved, Config string
	// Detail says what exactly was found.
	Detail string
}

// String is the reason as logged, e.g. "fingerprint changed:
// partition-tree-sprigs 512 doesn't match config 1024".
func (r Reason) String() string {
	if r.Field != "" {
		return fmt.Sprintf("%s: %s %s doesn't match config %s", r.Kind, r.Field, r.Saved, r.Config)
	}
	if r.Detail != "" {
		return fmt.Sprintf("%s: %s", r.Kind, r.Detail)
	}
	return r.Kind.String()
}

// RestartInfo describes how Open started the index.
type RestartInfo struct {
	Mode     Mode
	Reason   Reason        // Kind ReasonNone when Mode is Warm
	Records  uint64        // entries in the index when Open returned
	Duration time.Duration // from the start of Open to its return
	Rebuild  time.Duration // of that, time in the rebuild function (cold)
}

// RebuildFunc rebuilds a discarded index from storage (kvstore: a scan of
// its log), best with one bulk build (ix.NewBuilder: Add or Delete per
// storage record, then Finish; see "Bulk build" in the package
// documentation), or with ix.Put per live record. It runs inside Open on
// a cold start, with ix already the empty index's writer.
type RebuildFunc func(ctx context.Context, ix *Index) error

// lockStripes bounds the writer's sprig locks: 8192 mutexes (64 KiB) stay
// in the caches, where one per sprig (2^16 by default, up to 2^24) would add a
// cache miss to every write; writes to sprigs that share a stripe
// serialize, which costs nothing for one writing goroutine.
const lockStripes = 8192

// Index is the writer's handle on an index: Put, Delete, Get, Scan, Count.
// One process at a time is the writer (a lease in the main segment); its
// per-sprig locks are in its own memory. Methods are safe for concurrent
// use by the goroutines of the writer process.
type Index struct {
	v     view
	lease *lease.Lease
	locks []sync.Mutex // sprig locks: sprig s uses locks[s % len(locks)]
	// allocMu guards the allocator (free lists, next, stages) and the
	// clean → ready transition.
	allocMu sync.Mutex
	// gate: mutations hold it shared, Close exclusively.
	gate  sync.RWMutex
	dirty atomic.Bool // the clean marker has been invalidated
	lost  atomic.Bool // the lease was lost
	// gateOff is the offset of the writer gate (meta word mGate) in the
	// main segment: the fenced word every writer passes before its first
	// mutation (see "Fencing" in the package documentation).
	gateOff arena.Offset

	stopRenew chan struct{}
	renewDone chan struct{}
}

// Open attaches the index described by cfg as its writer, warm if the saved
// index can be trusted, otherwise cold: the saved segments are discarded,
// empty ones created and rebuild called to fill them. See the package
// documentation for the conditions. It fails with ErrWriterRunning if a
// live process is the writer.
func Open(ctx context.Context, cfg Config, rebuild RebuildFunc) (*Index, RestartInfo, error) {
	start := time.Now()
	if err := cfg.normalize(); err != nil {
		return nil, RestartInfo{}, err
	}
	ix, reason, err := tryWarm(ctx, &cfg)
	if err != nil {
		return nil, RestartInfo{}, err
	}
	log := cfg.Logger.With("instance", cfg.Instance, "namespace", cfg.Namespace, "store", cfg.Store.String())
	if ix != nil {
		log.Info("beginning warm restart", "records", ix.Count(), "stages", ix.v.meta.Load(mStages))
		ix.startRenew()
		info := RestartInfo{Mode: Warm, Records: ix.Count(), Duration: time.Since(start)}
		log.Info("warm restart done", "records", info.Records, "duration", info.Duration)
		return ix, info, nil
	}
	log.Info("beginning cold start: "+reason.String(), "reason", reason.Kind.String())
	ix, err = createFresh(ctx, &cfg)
	if err != nil {
		return nil, RestartInfo{}, err
	}
	ix.startRenew()
	rb := time.Now()
	if rebuild != nil {
		if err := rebuild(ctx, ix); err != nil {
			ix.Close()
			return nil, RestartInfo{}, fmt.Errorf("index: cold start (%s): %w: %w", reason, ErrRebuild, err)
		}
	}
	info := RestartInfo{Mode: Cold, Reason: reason, Records: ix.Count(), Duration: time.Since(start), Rebuild: time.Since(rb)}
	log.Info("cold start done", "reason", reason.String(), "records", info.Records, "rebuild", info.Rebuild, "duration", info.Duration)
	return ix, info, nil
}

// tryWarm attaches the saved index and judges it. It returns the index
// when the start can be warm, otherwise the reason (after discarding what
// was there), or an error when the start must not proceed at all.
func tryWarm(ctx context.Context, cfg *Config) (*Index, Reason, error) {
	loc := cfg.Store.block(cfg, 0)
	main, err := arena.Open(ctx, loc, cfg.segOptions(cfg.mainSpec()))
	if err != nil {
		reason, ok := classifyOpen(err, "main segment", loc)
		if !ok {
			return nil, Reason{}, fmt.Errorf("index: open %s: %w", loc, err)
		}
		if reason.Kind != ReasonSegmentsMissing {
			// A segment of another configuration or format: make sure no
			// writer is using it before discarding it.
			if err := checkNoWriter(ctx, loc, cfg); err != nil {
				return nil, Reason{}, err
			}
		}
		if err := discard(cfg, nil); err != nil {
			return nil, Reason{}, err
		}
		return nil, reason, nil
	}
	ix, err := newIndex(*cfg, main)
	if err != nil {
		main.Close()
		return nil, Reason{}, err
	}
	if err := ix.acquire(); err != nil {
		ix.closeSegments()
		return nil, Reason{}, err
	}
	reason := ix.judge(ctx)
	if reason.Kind == ReasonNone {
		ix.dirty.Store(false)
		return ix, reason, nil
	}
	// Cold: give the lease back only by discarding its segment. A start
	// that was replaced while it judged (paused past the threshold) must
	// not discard the index of the writer that replaced it.
	if err := ix.replaced(); err != nil {
		ix.closeSegments()
		return nil, Reason{}, fmt.Errorf("index: open %s: %w: %w", loc, ErrWriterRunning, err)
	}
	if err := discard(cfg, ix); err != nil {
		return nil, Reason{}, err
	}
	return nil, reason, nil
}

// classifyOpen turns an arena open error into a cold-start reason, or
// reports false for errors that must stop the start (permissions, a
// foreign owner, a segment still being initialized).
func classifyOpen(err error, what string, loc arena.Location) (Reason, bool) {
	var me *layout.MismatchError
	switch {
	case errors.Is(err, arena.ErrNotFound):
		return Reason{Kind: ReasonSegmentsMissing, Detail: fmt.Sprintf("%s %s not found", what, loc)}, true
	case errors.As(err, &me):
		saved, want := me.HaveText, me.WantText
		if saved == "" && want == "" {
			saved, want = fmt.Sprint(me.Have), fmt.Sprint(me.Want)
		}
		return Reason{Kind: ReasonFingerprint, Field: displayName(me.Field), Saved: saved, Config: want,
			Detail: fmt.Sprintf("%s %s", what, loc)}, true
	case errors.Is(err, layout.ErrVersion):
		saved := "other"
		var ce *layout.CheckError
		var major, minor int
		if errors.As(err, &ce) {
			if _, serr := fmt.Sscanf(ce.Detail, "format %d.%d", &major, &minor); serr == nil {
				saved = fmt.Sprintf("%d.%d", major, minor)
			}
		}
		return Reason{Kind: ReasonFingerprint, Field: "layout-version", Detail: fmt.Sprintf("%s %s: %v", what, loc, err),
			Saved: saved, Config: fmt.Sprintf("%d.%d", layout.Major, layout.Minor)}, true
	case errors.Is(err, layout.ErrChecksum), errors.Is(err, layout.ErrCorrupt), errors.Is(err, layout.ErrTruncated),
		errors.Is(err, layout.ErrNotOurs), errors.Is(err, arena.ErrRemoved), errors.Is(err, layout.ErrByteOrder), errors.Is(err, layout.ErrPlatform):
		return Reason{Kind: ReasonDamaged, Detail: fmt.Sprintf("%s %s: %v", what, loc, err)}, true
	}
	return Reason{}, false
}

// checkNoWriter attaches a main segment that does not match this
// configuration without a spec and fails if a live writer holds its lease.
func checkNoWriter(ctx context.Context, loc arena.Location, cfg *Config) error {
	st, err := arena.StatOf(loc)
	if err != nil {
		return nil // gone already, or unreadable: discard will say
	}
	seg, err := arena.Inspect(loc)
	if err != nil {
		return nil // header unreadable: no writer can be using it either
	}
	defer seg.Close()
	off, size, err := seg.Section(secLease)
	if err != nil || size < lease.Size {
		return nil
	}
	if int(st.OwnerUID) != os.Geteuid() && !slices.Contains(cfg.AllowUIDs, st.OwnerUID) {
		return fmt.Errorf("index: %s belongs to uid %d: refusing to discard another user's index (remove it yourself: %s)", loc, st.OwnerUID, loc.RemoveHint())
	}
	l, err := lease.New(seg, off, lease.Config{Threshold: cfg.LeaseThreshold, Logger: cfg.Logger})
	if err != nil {
		return nil
	}
	if _, err := l.TryAcquire(); err != nil {
		o := l.Owner()
		return fmt.Errorf("index: %s has another configuration and a live writer (pid %d, epoch %d): %w; stop it first", loc, o.Identity.PID, o.Epoch, ErrWriterRunning)
	}
	l.Release()
	return nil
}

func newIndex(cfg Config, main *arena.Segment) (*Index, error) {
	ix := &Index{locks: make([]sync.Mutex, min(Partitions*cfg.Sprigs, lockStripes))}
	if err := ix.v.init(cfg, main); err != nil {
		return nil, err
	}
	off, _, err := main.Section(secMeta)
	if err != nil {
		return nil, err
	}
	ix.gateOff = off + mGate*8
	ix.dirty.Store(true)
	return ix, nil
}

// acquire takes the writer lease of the main segment.
func (ix *Index) acquire() error {
	off, _, err := ix.v.main.Section(secLease)
	if err != nil {
		return err
	}
	l, err := lease.New(ix.v.main, off, lease.Config{Threshold: ix.v.cfg.LeaseThreshold, Logger: ix.v.cfg.Logger, Failpoints: ix.v.cfg.Failpoints})
	if err != nil {
		return fmt.Errorf("index: writer lease: %w", err)
	}
	if _, err := l.TryAcquire(); err != nil {
		if !errors.Is(err, lease.ErrHeld) {
			return fmt.Errorf("index: %s: writer lease: %w", ix.v.main.Location(), err)
		}
		o := l.Owner()
		return fmt.Errorf("index: %s: writer pid %d (epoch %d) is running: %w; stop it, or open a Reader", ix.v.main.Location(), o.Identity.PID, o.Epoch, ErrWriterRunning)
	}
	ix.lease = l
	return nil
}

// judge decides whether the attached index can be used warm.
func (ix *Index) judge(ctx context.Context) Reason {
	cfg := &ix.v.cfg
	if cfg.ForceCold {
		return Reason{Kind: ReasonForced, Detail: "Config.ForceCold"}
	}
	m := ix.v.meta
	stages := m.Load(mStages)
	if stages < 1 || stages > MaxStages {
		return Reason{Kind: ReasonDamaged, Detail: fmt.Sprintf("meta says %d stages, want 1–%d", stages, MaxStages)}
	}
	for k := 1; k < int(stages); k++ {
		loc := cfg.Store.block(cfg, k)
		seg, err := arena.Open(ctx, loc, cfg.segOptions(cfg.stageSpec(k)))
		if err != nil {
			if r, ok := classifyOpen(err, fmt.Sprintf("stage %d segment", k), loc); ok {
				return r
			}
			return Reason{Kind: ReasonDamaged, Detail: fmt.Sprintf("stage %d segment %s: %v", k, loc, err)}
		}
		w, err := stageWords(seg, ix.v.stageElems)
		if err != nil {
			seg.Close()
			return Reason{Kind: ReasonDamaged, Detail: err.Error()}
		}
		ix.v.segs[k] = seg
		ix.v.stages[k].Store(&w)
	}
	// Stamp the gate before reading any state: a writer that passed it
	// (and may still be writing) did so before the stamp and left it
	// dirty or closing; one that had not can never pass it now.
	if err := ix.stampGate(); err != nil {
		return Reason{Kind: ReasonDamaged, Detail: err.Error()}
	}
	if st := ix.v.main.State(); st != stateClean {
		return Reason{Kind: ReasonUnclean, Detail: fmt.Sprintf("the saved index is in state %s, not clean-shutdown: its last writer stopped without Close after writing", st)}
	}
	if st, e := ix.gateState(); st != gateClean && !cfg.noFence {
		what := "dirty: its writer had begun to mutate it"
		if st == gateClosing {
			what = "closing: its writer had begun a clean shutdown and did not finish it"
		}
		return Reason{Kind: ReasonUnclean, Detail: fmt.Sprintf("the writer gate (epoch %d) is %s", e, what)}
	}
	var mw [metaWords]uint64
	m.LoadN(0, mw[:])
	if mw[mSeal] != seal(&mw) {
		return Reason{Kind: ReasonDamaged, Detail: fmt.Sprintf("clean-shutdown seal %#x doesn't match the meta (%#x)", mw[mSeal], seal(&mw))}
	}
	var savedUUID [16]byte
	binary.BigEndian.PutUint64(savedUUID[0:8], mw[mUUIDHi])
	binary.BigEndian.PutUint64(savedUUID[8:16], mw[mUUIDLo])
	if savedUUID != cfg.Storage.UUID {
		return Reason{Kind: ReasonStorageChanged, Field: "storage-uuid", Saved: fmt.Sprintf("%x", savedUUID), Config: fmt.Sprintf("%x", cfg.Storage.UUID),
			Detail: "the storage was wiped or replaced"}
	}
	if mw[mCommitted] != cfg.Storage.Committed {
		return Reason{Kind: ReasonStorageChanged, Field: "storage-committed-length", Saved: fmt.Sprint(mw[mCommitted]), Config: fmt.Sprint(cfg.Storage.Committed),
			Detail: "the storage was written or truncated without the index"}
	}
	if mw[mStorageSeq] != cfg.Storage.Seq {
		return Reason{Kind: ReasonStorageChanged, Field: "storage-seq", Saved: fmt.Sprint(mw[mStorageSeq]), Config: fmt.Sprint(cfg.Storage.Seq),
			Detail: "the storage was written without the index"}
	}
	if err := ix.quickCheck(&mw); err != nil {
		return Reason{Kind: ReasonDamaged, Detail: err.Error()}
	}
	if cfg.CheckOnWarm {
		if err := ix.Check(); err != nil {
			return Reason{Kind: ReasonDamaged, Detail: err.Error()}
		}
	}
	return Reason{}
}

// quickCheck validates the meta words a warm start trusts without a walk.
func (ix *Index) quickCheck(mw *[metaWords]uint64) error {
	capacity := mw[mStages] * ix.v.stageElems
	switch {
	case mw[mNext] > capacity:
		return corrupt("meta: %d lines handed out, capacity %d", mw[mNext], capacity)
	case mw[mFreeCount] > mw[mNext] || mw[mTableLines] > mw[mNext] || mw[mTableLines]+mw[mFreeCount] != mw[mNext]:
		return corrupt("meta: %d table lines + %d free lines != %d handed out", mw[mTableLines], mw[mFreeCount], mw[mNext])
	case mw[mLive] > mw[mTableLines]:
		return corrupt("meta: %d live entries in %d table lines", mw[mLive], mw[mTableLines])
	}
	for c := range uint64(allocWords) {
		h := Handle(ix.v.alloc.Load(c))
		if h.IsNull() {
			continue
		}
		if c >= numClasses || h > MaxHandle || h.Elem()+classLines(c) > ix.v.stageElems || h.linear(ix.v.stageElems)+classLines(c) > mw[mNext] {
			return corrupt("meta: free list head %s of class %d outside the %d lines handed out", h, c, mw[mNext])
		}
	}
	var sum uint64
	for p := range uint64(Partitions) {
		sum += ix.v.parts.Load(p*partWords + pCount)
	}
	if sum != mw[mLive] {
		return corrupt("partition counts sum to %d, meta says %d live entries", sum, mw[mLive])
	}
	return nil
}

// discard detaches ix (if any) and removes the segments of the index: the
// main segment, then stages 1, 2, … while they exist and are index
// segments (stages are created in order, so the run ends at the first gap;
// a stale stage past a gap is replaced when addStage reaches it). A
// segment at a stage's key that is not an index segment is left alone.
func discard(cfg *Config, ix *Index) error {
	if ix != nil {
		ix.closeSegments()
	}
	var errs []error
blocks:
	for b := range MaxStages {
		loc := cfg.Store.block(cfg, b)
		if _, err := arena.StatOf(loc); errors.Is(err, arena.ErrNotFound) {
			if b == 0 {
				continue
			}
			break
		}
		// Block 0 whatever it holds; a stage only if it is an index
		// segment. The segment checked is the one removed (RemoveIf), not
		// whatever a newer writer may have created at loc meanwhile.
		removed, err := arena.RemoveIf(loc, arena.RemoveOptions{Force: true}, func(seg *arena.Segment, hdrErr error) bool {
			return b == 0 || (hdrErr == nil && seg.Header().Kind == layout.KindIndex)
		})
		switch {
		case errors.Is(err, arena.ErrNotFound): // removed meanwhile by another
		case err != nil:
			errs = append(errs, err)
			if b > 0 {
				break blocks
			}
		case !removed:
			break blocks // not an index's stage: the index ends before it
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("index: discard the saved index: %w", errors.Join(errs...))
	}
	return nil
}

// isIndexSegment reports whether the segment at loc has a valid header of
// kind index.
func isIndexSegment(loc arena.Location) bool {
	seg, err := arena.Inspect(loc)
	if err != nil {
		return false
	}
	defer seg.Close()
	return seg.Header().Kind == layout.KindIndex
}

// createFresh creates an empty index and takes its lease.
func createFresh(ctx context.Context, cfg *Config) (*Index, error) {
	loc := cfg.Store.block(cfg, 0)
	main, err := arena.Create(ctx, loc, cfg.segOptions(cfg.mainSpec()))
	if errors.Is(err, arena.ErrExists) {
		return nil, fmt.Errorf("index: create %s: another process created the index at the same time and is its writer: %w (%w)", loc, ErrWriterRunning, err)
	}
	if err != nil {
		return nil, fmt.Errorf("index: create %s: %w", loc, err)
	}
	ix, err := newIndex(*cfg, main)
	if err != nil {
		main.Close()
		return nil, err
	}
	ix.v.meta.Store(mStages, 1)
	if err := ix.acquire(); err != nil {
		ix.closeSegments()
		return nil, err
	}
	// A fresh index is dirty from the start (a crash before CloseClean
	// leaves it unclean), and its gate carries this writer's epoch.
	if err := ix.stampGate(); err != nil {
		ix.lease.Release()
		ix.closeSegments()
		return nil, err
	}
	if err := ix.passGate(gateClean, gateDirty); err != nil {
		ix.lease.Release()
		ix.closeSegments()
		return nil, err
	}
	return ix, nil
}

// stampGate makes the writer gate carry this writer's lease epoch, so
// that no earlier writer can pass it any more (lease.Stamp: one CAS,
// keeping the state). A gate stamped by a newer epoch than the lease's
// own is damage.
func (ix *Index) stampGate() error {
	if ix.v.cfg.noFence {
		return nil
	}
	if err := ix.lease.Stamp(ix.v.main, ix.gateOff); err != nil {
		return fmt.Errorf("index: %s: stamp the writer gate: %w: %w", ix.v.main.Location(), ErrCorrupt, err)
	}
	return nil
}

// gateState returns the state (payload) and epoch of the writer gate.
func (ix *Index) gateState() (state, epoch uint64) {
	epoch, state = lease.SplitFenced(ix.v.main.Load64(ix.gateOff))
	return state, epoch
}

// passGate moves the writer gate from state from to state to with a
// fenced CAS carrying this writer's epoch. It fails with ErrLeaseLost
// (wrapping lease.ErrFenced) once a newer writer has stamped the gate,
// and with ErrCorrupt if the gate is not in state from.
func (ix *Index) passGate(from, to uint64) error {
	if ix.v.cfg.noFence {
		return nil
	}
	ok, err := ix.lease.FencedCAS(ix.v.main, ix.gateOff, from, to)
	switch {
	case errors.Is(err, lease.ErrFenced), errors.Is(err, lease.ErrNotOwner):
		ix.lost.Store(true)
		return fmt.Errorf("index: writer gate: %w: another process took over the index (this one was paused past Config.LeaseThreshold); stop this one: %w", ErrLeaseLost, err)
	case err != nil:
		return fmt.Errorf("index: writer gate: %w", err)
	case !ok:
		st, e := ix.gateState()
		return corrupt("writer gate in state %d (epoch %d), want %d", st, e, from)
	}
	return nil
}

// startRenew keeps the writer lease's heartbeat fresh.
func (ix *Index) startRenew() {
	ix.stopRenew = make(chan struct{})
	ix.renewDone = make(chan struct{})
	every := ix.v.cfg.LeaseThreshold / 4
	go func() {
		defer close(ix.renewDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ix.stopRenew:
				return
			case <-t.C:
				if err := ix.lease.Renew(); err != nil {
					ix.lost.Store(true)
					ix.v.cfg.Logger.Error("index: writer lease lost: refusing further writes", "err", err)
					return
				}
			}
		}
	}()
}

func (ix *Index) stopRenewing() {
	if ix.stopRenew != nil {
		close(ix.stopRenew)
		<-ix.renewDone
		ix.stopRenew = nil
	}
}

func (ix *Index) closeSegments() { ix.v.detach() }

// Get returns the record of d and whether there is one.
func (ix *Index) Get(d Digest) (Record, bool, error) { return ix.v.get(d) }

// Scan calls fn for every record of partition p in digest order until fn
// returns false. Every key present for the whole scan is reported exactly
// once; keys inserted or deleted during the scan may or may not be.
func (ix *Index) Scan(p int, fn func(Record) bool) error { return ix.v.scan(p, fn) }

// Count returns the number of entries in the index (0 once closed).
func (ix *Index) Count() uint64 { return ix.v.count() }

// Partition returns the statistics of partition p (0–4095).
func (ix *Index) Partition(p int) PartitionStats { return ix.v.partition(p & (Partitions - 1)) }

// Close detaches the writer without a clean shutdown, as if the process
// had exited: if it wrote anything since Open the next start is cold
// (ReasonUnclean); if it wrote nothing the saved index stays as it was
// (a start that fails before its first mutation leaves it warm).
func (ix *Index) Close() error {
	ix.gate.Lock()
	defer ix.gate.Unlock()
	if ix.v.closed.Load() {
		return nil
	}
	ix.stopRenewing()
	if ix.lease != nil {
		ix.lease.Release()
	}
	ix.closeSegments()
	return nil
}

// CloseClean shuts the index down cleanly: it waits for running writes,
// writes every segment back (msync, for file segments), records storage
// (the identity the storage reports now: UUID and committed length) with
// a seal over the allocator state, marks the main segment clean-shutdown,
// writes it back again, releases the writer lease and detaches. The next
// Open with the same storage identity is warm.
func (ix *Index) CloseClean(storage StorageID) error {
	ix.gate.Lock()
	defer ix.gate.Unlock()
	if ix.v.closed.Load() {
		return fmt.Errorf("index: close: %w", ErrClosed)
	}
	ix.stopRenewing()
	if ix.lost.Load() {
		ix.closeSegments()
		return fmt.Errorf("index: clean close: %w: the index is another writer's now; not marked clean", ErrLeaseLost)
	}
	// The gate to closing first (fenced): a writer replaced while paused
	// here records nothing in the new writer's index, and a takeover
	// while this close is under way finds the gate closing and starts
	// cold.
	from := uint64(gateClean)
	if ix.dirty.Load() {
		from = gateDirty
	}
	if err := ix.passGate(from, gateClosing); err != nil {
		if !ix.lost.Load() {
			ix.lease.Release()
		}
		ix.closeSegments()
		return fmt.Errorf("index: clean close: not marked clean: %w", err)
	}
	ix.v.cfg.Failpoints.Hit(FailCloseClosing)
	if err := ix.syncAll(); err != nil {
		ix.lease.Release()
		ix.closeSegments()
		return fmt.Errorf("index: clean close: not marked clean: %w", err)
	}
	m := ix.v.meta
	m.Store(mUUIDHi, binary.BigEndian.Uint64(storage.UUID[0:8]))
	m.Store(mUUIDLo, binary.BigEndian.Uint64(storage.UUID[8:16]))
	m.Store(mCommitted, storage.Committed)
	m.Store(mStorageSeq, storage.Seq)
	m.Store(mCleanCount, m.Load(mCleanCount)+1)
	var mw [metaWords]uint64
	m.LoadN(0, mw[:])
	m.Store(mSeal, seal(&mw))
	if err := ix.passGate(gateClosing, gateClean); err != nil {
		if !ix.lost.Load() {
			ix.lease.Release()
		}
		ix.closeSegments()
		return fmt.Errorf("index: clean close: not marked clean: %w", err)
	}
	if !ix.v.main.SetState(stateReady, stateClean) && ix.v.main.State() != stateClean {
		ix.lease.Release()
		ix.closeSegments()
		return fmt.Errorf("index: clean close: main segment in state %s, cannot mark it clean: %w", ix.v.main.State(), ErrCorrupt)
	}
	err := ix.v.main.Sync()
	ix.lease.Release()
	ix.closeSegments()
	if err != nil {
		return fmt.Errorf("index: clean close: the clean marker may not be on disk: %w", err)
	}
	return nil
}

// syncAll writes every segment back to its file (no-op for SysV and heap).
func (ix *Index) syncAll() error {
	ix.v.stageMu.Lock()
	defer ix.v.stageMu.Unlock()
	for k := 1; k < MaxStages; k++ {
		if s := ix.v.segs[k]; s != nil {
			if err := s.Sync(); err != nil {
				return err
			}
		}
	}
	return ix.v.main.Sync()
}
