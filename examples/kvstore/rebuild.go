package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/index"
)

// A cold rebuild reads the log once (storage.Scan, in log order) and
// applies every record to the empty index:
//
//   - a record written by Append supersedes whatever the index holds for
//     its digest (it is later in the log and has the larger Seq);
//   - a tombstone deletes the digest;
//   - a defragmenter's copy (Copied) applies only if its Seq is larger than
//     that of the record the index holds (read back from the log) and of
//     the last tombstone of its digest: a copy can land after a newer
//     version or a delete of its key;
//   - every record a later one supersedes is released, so the log's
//     live-byte accounting (which Scan restarts) is exact again.
//
// The scan runs in one goroutine and hands records, in batches, to
// -rebuild-workers goroutines that insert them; a digest always goes to
// the same worker (by partition), so the records of one digest are applied
// in log order.

// rebuildItem is what a worker needs of one log record (fixed size: the
// scan's record slices alias its buffer and cannot be kept).
type rebuildItem struct {
	rec       index.Record
	loc       storage.Location
	seq       uint64
	tombstone bool
	copied    bool
}

const rebuildBatch = 512

// rebuildStats counts what a rebuild did.
type rebuildStats struct {
	records, puts, deletes, superseded, copiesDropped uint64
}

// rebuild returns the index's RebuildFunc for this namespace.
func (n *namespace) rebuild(workers int) index.RebuildFunc {
	return func(ctx context.Context, ix *index.Index) error {
		t := time.Now()
		stats, err := n.rebuildFrom(ctx, ix, workers)
		if err != nil {
			return err
		}
		d := time.Since(t)
		rate := 0.0
		if d > 0 {
			rate = float64(stats.records) / d.Seconds()
		}
		n.log.Info("log scanned into the index", "log_records", stats.records, "puts", stats.puts, "deletes", stats.deletes,
			"superseded", stats.superseded, "stale_copies", stats.copiesDropped, "duration", d, "records_per_s", int64(rate))
		return nil
	}
}

func (n *namespace) rebuildFrom(ctx context.Context, ix *index.Index, workers int) (rebuildStats, error) {
	type worker struct {
		in    chan []rebuildItem
		stats rebuildStats
		err   error
	}
	free := make(chan []rebuildItem, workers*8)
	for range workers * 8 {
		free <- make([]rebuildItem, 0, rebuildBatch)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{in: make(chan []rebuildItem, 4)}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := applier{n: n, ix: ix, tombs: map[index.Digest]uint64{}}
			for batch := range w.in {
				if w.err == nil {
					w.err = a.apply(batch)
					if w.err != nil {
						cancel()
					}
				}
				free <- batch[:0]
			}
			w.stats = a.stats
		}()
	}
	cur := make([][]rebuildItem, workers)
	for i := range cur {
		cur[i] = <-free
	}
	var scanned uint64
	scanErr := n.st.Scan(func(rec storage.Record, loc storage.Location) error {
		scanned++
		if scanned%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		it := rebuildItem{loc: loc, seq: rec.Seq, tombstone: rec.Tombstone, copied: rec.Copied}
		if rec.Tombstone {
			it.rec.Digest = rec.Digest
		} else {
			var err error
			if it.rec, err = n.indexRecord(&rec, loc); err != nil {
				return err
			}
		}
		w := 0
		if workers > 1 {
			w = int(binary.BigEndian.Uint16(rec.Digest[:2])) % workers
		}
		cur[w] = append(cur[w], it)
		if len(cur[w]) == rebuildBatch {
			ws[w].in <- cur[w]
			select {
			case cur[w] = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for i, w := range ws {
		if len(cur[i]) > 0 {
			w.in <- cur[i]
		}
		close(w.in)
	}
	wg.Wait()
	var total rebuildStats
	total.records = scanned
	for _, w := range ws {
		if w.err != nil {
			return total, w.err
		}
		total.puts += w.stats.puts
		total.deletes += w.stats.deletes
		total.superseded += w.stats.superseded
		total.copiesDropped += w.stats.copiesDropped
	}
	if scanErr != nil {
		return total, fmt.Errorf("namespace %s: scan log: %w", n.name, scanErr)
	}
	return total, nil
}

// applier applies log records to the index (one per worker).
type applier struct {
	n     *namespace
	ix    *index.Index
	tombs map[index.Digest]uint64 // Seq of the last tombstone of each deleted digest
	stats rebuildStats
}

func (a *applier) apply(batch []rebuildItem) error {
	for i := range batch {
		if err := a.applyOne(&batch[i]); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) applyOne(it *rebuildItem) error {
	n := a.n
	d := it.rec.Digest
	var prev index.Record
	var had bool
	if it.copied && !n.ignoreSeq {
		// A defragmenter's copy: it applies only if newer than what the
		// index holds and than the digest's last tombstone.
		if s, ok := a.tombs[d]; ok && s > it.seq {
			a.stats.copiesDropped++
			if !it.tombstone {
				n.st.Release(it.loc)
			}
			return nil
		}
		cur, found, err := a.ix.Get(d)
		if err != nil {
			return err
		}
		if found {
			if n.dii {
				return fmt.Errorf("namespace %s: defragmenter copy at %v in a data-in-index log (never defragmented): %w", n.name, it.loc, storage.ErrCorrupt)
			}
			old, err := n.st.Read(location(&cur))
			if err != nil {
				return fmt.Errorf("namespace %s: read back %v to compare with the copy at %v: %w", n.name, location(&cur), it.loc, err)
			}
			if old.Seq >= it.seq {
				a.stats.copiesDropped++
				if !it.tombstone {
					n.st.Release(it.loc)
				}
				return nil
			}
		}
	}
	if it.tombstone {
		a.tombs[d] = it.seq
		if _, err := a.ix.Update(d, func(c index.Record, f bool) (index.Record, index.Action) {
			prev, had = c, f
			return index.Record{}, index.Remove
		}); err != nil {
			return err
		}
		if had {
			a.stats.deletes++
		}
	} else {
		if _, err := a.ix.Update(d, func(c index.Record, f bool) (index.Record, index.Action) {
			prev, had = c, f
			return it.rec, index.Write
		}); err != nil {
			return err
		}
		a.stats.puts++
	}
	if had {
		a.stats.superseded++
		if !n.dii {
			n.st.Release(location(&prev))
		}
	}
	return nil
}
