package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/partmap"
)

// Failpoints of the server (see package failpoint); the storage's and the
// index's own failpoints are armed from the same spec.
const (
	// FailBeforeAppend: a write was parsed and is about to be appended to
	// the log; nothing is in the log yet.
	FailBeforeAppend = "kvstore.write.before-append"
	// FailBeforeIndex: the record (or tombstone) is in the log and about
	// to be applied to the index; not acknowledged yet.
	FailBeforeIndex = "kvstore.write.before-index"
	// FailAfterIndex: the index points at the new record; the reply is
	// about to be sent.
	FailAfterIndex = "kvstore.write.after-index"
	// FailOpened: every namespace is open (log and index attached), the
	// server does not answer yet and nothing was written.
	FailOpened = "kvstore.start.opened"
)

// Errors of the server.
var (
	// ErrNotInteger: a write to a data-in-index namespace was not a
	// single integer bin.
	ErrNotInteger = errors.New("data-in-index namespace takes a single integer bin")
	// ErrBadRecord: the body is not a JSON object of bins.
	ErrBadRecord = errors.New("record body must be a JSON object of bins")
	// ErrRunning: another kvstore serves this instance and namespace.
	ErrRunning = errors.New("another kvstore is running on this instance and namespace")
)

// lockStripes is the number of per-digest write locks of a namespace: two
// writes of one digest are applied to the index in log order.
const lockStripes = 1024

// namespace is one namespace: its log, its index and the locks that keep
// writes of a digest in log order.
type namespace struct {
	name string
	num  uint8
	dii  bool
	st   *storage.Storage
	ix   *index.Index
	fps  *failpoint.Set
	log  *slog.Logger

	locks [lockStripes]sync.Mutex

	// ignoreSeq makes a rebuild apply defragmenter copies like any other
	// record: only for the tests' negative control of the Seq rule.
	ignoreSeq bool
	// unlockedLiveness makes Live and Moved skip the digest's write lock:
	// only for the tests' negative control of that lock.
	unlockedLiveness bool
}

// storageID folds the log's identity into the index's.
func storageID(id storage.Identity) index.StorageID {
	return index.StorageID{UUID: id.UUID, Committed: uint64(id.File)<<40 | id.Offset, Seq: id.NextSeq}
}

// indexStore returns the index store of namespace number num.
func indexStore(o *options, num int) index.Store {
	switch {
	case o.shmDir != "":
		return index.Dir(o.shmDir)
	case o.sysvBase != 0:
		return index.SysVAt(arena.Key(o.sysvBase) + arena.Key(num)<<8)
	}
	return index.SysV()
}

// indexConfig is the index configuration of namespace number num.
func indexConfig(o *options, num int, fps *failpoint.Set, log *slog.Logger) index.Config {
	return index.Config{
		Store:        indexStore(o, num),
		Instance:     uint8(o.instance),
		Namespace:    uint8(num),
		Sprigs:       o.sprigs,
		StageEntries: o.stageEntries,
		DataInIndex:  o.dii[o.namespaces[num]],
		ForceCold:    o.coldStart,
		CheckOnWarm:  o.checkOnWarm,
		Failpoints:   fps,
		Logger:       log,
	}
}

// storageOptions are the log options of the server.
func storageOptions(o *options, fps *failpoint.Set, log *slog.Logger) storage.Options {
	return storage.Options{FileSize: o.fileSize, SyncEveryWrite: o.sync, DefragThreshold: o.defragThresh, Logger: log, Failpoints: fps}
}

// openNamespace opens the log and the index of namespace number num,
// warm if the index can be trusted, otherwise rebuilt from the log.
func openNamespace(ctx context.Context, o *options, num int, fps *failpoint.Set, log *slog.Logger) (*namespace, index.RestartInfo, error) {
	name := o.namespaces[num]
	log = log.With("ns", name)
	n := &namespace{name: name, num: uint8(num), dii: o.dii[name], fps: fps, log: log}
	cfg := indexConfig(o, num, fps, log)
	dir := filepath.Join(o.dir, name)
	st, err := storage.Open(dir, storageOptions(o, fps, log))
	if err != nil {
		if errors.Is(err, storage.ErrLocked) {
			return nil, index.RestartInfo{}, n.whoRuns(dir, err)
		}
		return nil, index.RestartInfo{}, fmt.Errorf("namespace %s: open log %s: %w", name, dir, err)
	}
	n.st = st
	cfg.Storage = storageID(st.Identity())
	ix, info, err := index.Open(ctx, cfg, n.rebuild())
	if err != nil {
		st.Close()
		if errors.Is(err, index.ErrWriterRunning) {
			return nil, info, fmt.Errorf("namespace %s: %w: %w", name, ErrRunning, err)
		}
		return nil, info, fmt.Errorf("namespace %s: open index: %w", name, err)
	}
	n.ix = ix
	if info.Mode == index.Warm && !st.Clean() {
		// The index matched the log's identity but the log's own state
		// file is gone: its live-byte accounting restarted, so rebuild it
		// from the index (what it points at is live).
		t := time.Now()
		if err := n.recount(); err != nil {
			n.closeUnclean()
			return nil, info, err
		}
		log.Info("log accounting rebuilt from the index", "duration", time.Since(t))
	}
	return n, info, nil
}

// whoRuns explains a log directory locked by another process, naming it
// by the pid the kernel lists as the holder of the directory's flock
// (/proc/locks). It changes nothing: probing the index instead could
// discard it (an index.Open that does not hit a live writer judges the
// saved index against the log's identity, which a locked log cannot
// give). A second kvstore with another -dir on the same instance and
// namespace gets past the log and is refused by the index's writer lease
// (ErrWriterRunning, which names the writer's pid).
func (n *namespace) whoRuns(dir string, lockErr error) error {
	pid, err := flockHolder(dir)
	if err != nil {
		return fmt.Errorf("namespace %s: %w: its log directory %s is locked (holder unknown: %v): %w", n.name, ErrRunning, dir, err, lockErr)
	}
	return fmt.Errorf("namespace %s: %w: pid %d holds its log directory %s (stop it first; a -load run also holds it): %w", n.name, ErrRunning, pid, dir, lockErr)
}

// flockHolder returns the pid of the process holding a flock on path,
// from /proc/locks (lines "N: FLOCK ADVISORY WRITE pid maj:min:inode ...").
func flockHolder(path string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == want {
			pid, err := strconv.Atoi(f[4])
			if err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no flock on %s (device:inode %s) in /proc/locks", path, want)
}

// lock returns the write lock of digest d.
func (n *namespace) lock(d *index.Digest) *sync.Mutex {
	return &n.locks[binary.LittleEndian.Uint16(d[18:])%lockStripes]
}

// location returns the log location an index record points at.
func location(r *index.Record) storage.Location {
	return storage.Location{File: uint32(r.FileID), Offset: r.Offset, Size: r.Size}
}

// indexRecord is the index entry of a log record at loc.
//
// A data-in-index entry keeps the value where a regular one keeps the
// offset, and no file id (the index refuses one); it keeps the frame
// size, so that an overwrite or delete can tell the log how many bytes
// died. See holds for how a data-in-index record's liveness is decided
// without a location.
func (n *namespace) indexRecord(rec *storage.Record, loc storage.Location) (index.Record, error) {
	r := index.Record{Digest: rec.Digest, Generation: uint16(rec.Generation), VoidTime: rec.VoidTime, LastUpdate: rec.LastUpdate, Size: loc.Size}
	if n.dii {
		v, err := n.diiValue(rec, loc)
		r.Value = v
		return r, err
	}
	r.FileID, r.Offset = uint16(loc.File), loc.Offset
	return r, nil
}

// release tells the log that the record the index entry r held is dead
// (overwritten, deleted, or superseded in a rebuild). A data-in-index
// entry does not say which file holds it, only its size: the log counts
// it as unplaced, and its defragmenter finds out where by surveying (see
// storage.Storage.ReleaseUnplaced).
func (n *namespace) release(r *index.Record) {
	if n.dii {
		n.st.ReleaseUnplaced(uint64(r.Size))
		return
	}
	n.st.Release(location(r))
}

// diiValue is the integer bin of a data-in-index log record.
func (n *namespace) diiValue(rec *storage.Record, loc storage.Location) (int64, error) {
	if len(rec.Bins) != 8 {
		return 0, fmt.Errorf("namespace %s: record at %v has %d bytes of bins, a data-in-index record has 8: was the namespace written without -dii? %w", n.name, loc, len(rec.Bins), ErrNotInteger)
	}
	return int64(binary.LittleEndian.Uint64(rec.Bins)), nil
}

// result is what a read or write answers.
type result struct {
	Found      bool
	Generation uint16
	Bins       []byte // JSON object (regular namespace)
	Value      int64  // data-in-index
}

// get reads the record of set/key.
func (n *namespace) get(set, key string) (result, error) {
	d := index.Digest(partmap.StringKeyDigest(set, key))
	for try := 0; ; try++ {
		r, found, err := n.ix.Get(d)
		if err != nil || !found {
			return result{}, err
		}
		if n.dii {
			return result{Found: true, Generation: r.Generation, Value: r.Value}, nil
		}
		rec, err := n.st.Read(location(&r))
		if errors.Is(err, storage.ErrNotFound) && try < 8 {
			continue // moved by the defragmenter meanwhile: look it up again
		}
		if err != nil {
			return result{}, err
		}
		if rec.Digest != d {
			return result{}, fmt.Errorf("namespace %s: index points %s/%s at %v, which holds another digest: %w; restart with -coldstart", n.name, set, key, location(&r), index.ErrCorrupt)
		}
		return result{Found: true, Generation: r.Generation, Bins: rec.Bins}, nil
	}
}

// put writes the record of set/key: bins is a JSON object (regular) or the
// 8-byte value (data-in-index). It returns once the record is in the log
// and the index.
func (n *namespace) put(set, key string, bins []byte, value int64) (result, error) {
	d := index.Digest(partmap.StringKeyDigest(set, key))
	mu := n.lock(&d)
	mu.Lock()
	defer mu.Unlock()
	cur, found, err := n.ix.Get(d)
	if err != nil {
		return result{}, err
	}
	gen := uint16(1)
	if found {
		gen = cur.Generation + 1
		if gen == 0 {
			gen = 1 // wraps, as Aerospike's generation does
		}
	}
	rec := storage.Record{Namespace: []byte(n.name), Digest: d, Set: []byte(set), Key: []byte(key),
		Generation: uint32(gen), LastUpdate: uint64(time.Now().UnixMilli()), Bins: bins}
	if n.dii {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(value))
		rec.Bins = b[:]
	}
	n.fps.Hit(FailBeforeAppend)
	loc, err := n.st.Append(rec)
	if err != nil {
		return result{}, fmt.Errorf("namespace %s: append: %w", n.name, err)
	}
	n.fps.Hit(FailBeforeIndex)
	ir, err := n.indexRecord(&rec, loc)
	if err != nil {
		return result{}, err
	}
	var prev index.Record
	var had bool
	if _, err := n.ix.Update(d, func(c index.Record, f bool) (index.Record, index.Action) {
		prev, had = c, f
		return ir, index.Write
	}); err != nil {
		return result{}, fmt.Errorf("namespace %s: index: %w (the record is in the log: a cold restart applies it)", n.name, err)
	}
	if had {
		n.release(&prev)
	}
	n.fps.Hit(FailAfterIndex)
	return result{Found: true, Generation: gen, Bins: bins, Value: value}, nil
}

// del deletes the record of set/key, writing a tombstone to the log first
// so that no restart brings it back. It reports whether there was one.
func (n *namespace) del(set, key string) (bool, error) {
	d := index.Digest(partmap.StringKeyDigest(set, key))
	mu := n.lock(&d)
	mu.Lock()
	defer mu.Unlock()
	_, found, err := n.ix.Get(d)
	if err != nil || !found {
		return false, err
	}
	rec := storage.Record{Namespace: []byte(n.name), Digest: d, Set: []byte(set), Key: []byte(key),
		LastUpdate: uint64(time.Now().UnixMilli()), Tombstone: true}
	n.fps.Hit(FailBeforeAppend)
	if _, err := n.st.Append(rec); err != nil {
		return false, fmt.Errorf("namespace %s: append tombstone: %w", n.name, err)
	}
	n.fps.Hit(FailBeforeIndex)
	var prev index.Record
	var had bool
	if _, err := n.ix.Update(d, func(c index.Record, f bool) (index.Record, index.Action) {
		prev, had = c, f
		return index.Record{}, index.Remove
	}); err != nil {
		return false, fmt.Errorf("namespace %s: index: %w (the tombstone is in the log: a cold restart applies it)", n.name, err)
	}
	if had {
		n.release(&prev)
	}
	n.fps.Hit(FailAfterIndex)
	return true, nil
}

// closeClean closes the log cleanly, then the index with the log's
// identity: the next start is warm. The order matters: a crash between
// the two leaves the index unclean (cold next time), never an index
// marked clean over a log whose accounting was not saved.
func (n *namespace) closeClean() error {
	id := n.st.Identity()
	if err := n.st.Close(); err != nil {
		n.ix.Close()
		return fmt.Errorf("namespace %s: close log: %w (the index is left unclean: the next start is cold)", n.name, err)
	}
	if err := n.ix.CloseClean(storageID(id)); err != nil {
		return fmt.Errorf("namespace %s: close index: %w", n.name, err)
	}
	n.log.Info("closed cleanly", "storage", id.String())
	return nil
}

// closeUnclean closes both without the clean marker (start-up failures).
func (n *namespace) closeUnclean() {
	if n.ix != nil {
		n.ix.Close()
	}
	if n.st != nil {
		n.st.Close()
	}
}

// recount rebuilds the log's live-byte accounting from a warm index: every
// record the index does not hold is released.
func (n *namespace) recount() error {
	return n.st.Scan(func(rec storage.Record, loc storage.Location) error {
		if rec.Tombstone {
			return nil
		}
		r, found, err := n.ix.Get(rec.Digest)
		if err != nil {
			return err
		}
		if !found || !n.holds(&r, &rec, loc) {
			n.st.Release(loc)
		}
		return nil
	})
}

// holds reports whether the index entry r is the log record rec at loc.
//
// A regular entry points at its record: r holds rec iff its location is
// loc. A data-in-index entry has no location, so it holds rec iff they
// agree on what the entry keeps of the record: value, generation and
// last-update time. Two versions of a key agree on all three only if
// written in the same millisecond with the same value and generation (a
// delete and a re-creation in between, or 65536 writes): then both count
// as live and the defragmenter copies both, which costs one record's
// space and loses nothing, since a cold rebuild still keeps the largest
// Seq and a copy, like its original, keeps newer tombstones of its key
// from being dropped. What must never happen is a live record judged
// dead, and the version the index holds always agrees with itself. The
// frame size is deliberately not compared: it only feeds the accounting.
func (n *namespace) holds(r *index.Record, rec *storage.Record, loc storage.Location) bool {
	if !n.dii {
		return location(r) == loc
	}
	v, err := n.diiValue(rec, loc)
	return err == nil && r.Value == v && r.Generation == uint16(rec.Generation) && r.LastUpdate == rec.LastUpdate
}

// lockDigest takes the write lock of rec's digest and returns its unlock.
func (n *namespace) lockDigest(rec *storage.Record) func() {
	if n.unlockedLiveness {
		return func() {}
	}
	mu := n.lock((*index.Digest)(&rec.Digest))
	mu.Lock()
	return mu.Unlock
}

// Live implements storage.Liveness: the index holds rec (see holds). It
// takes the digest's write lock, so that a write whose record is in the
// log but not yet in the index (a file can be sealed, and picked by the
// defragmenter, in between) is judged after its index update, not before:
// judged before, its record would be dropped as dead.
func (n *namespace) Live(rec *storage.Record, loc storage.Location) bool {
	defer n.lockDigest(rec)()
	r, found, err := n.ix.Get(rec.Digest)
	return err == nil && found && n.holds(&r, rec, loc)
}

// Moved implements storage.Liveness: a compare-and-set of the index entry
// from the record at one location to its copy at another, under the
// digest's write lock. A data-in-index entry names no location, so
// nothing changes in it: Moved reports whether it still holds the record
// (the copy is then the live version; otherwise the copy is dead).
func (n *namespace) Moved(rec *storage.Record, from, to storage.Location) bool {
	defer n.lockDigest(rec)()
	if n.dii {
		r, found, err := n.ix.Get(rec.Digest)
		return err == nil && found && n.holds(&r, rec, from)
	}
	moved := false
	_, err := n.ix.Update(rec.Digest, func(c index.Record, found bool) (index.Record, index.Action) {
		if !found || !n.holds(&c, rec, from) {
			return c, index.Keep
		}
		c.FileID, c.Offset, c.Size = uint16(to.File), to.Offset, to.Size
		moved = true
		return c, index.Write
	})
	return err == nil && moved
}
