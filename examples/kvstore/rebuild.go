package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/shmkit/shmkit/index"
)

// A cold rebuild reads the log once (storage.Scan, in log order) into an
// index.Builder, which keeps one winner per digest and lays the empty
// index down in one pass (sorted, each sprig's tree built bottom-up):
//
//   - every record and every tombstone is given with its write sequence
//     (storage.Record.Seq); of all those of one digest, the largest Seq
//     wins. A record written by Append has a larger Seq than everything
//     before it of its key; a defragmenter's copy keeps the Seq of the
//     write it copies, so a copy that lands after a newer version or a
//     delete of its key (it can) loses to them;
//   - a tombstone that wins leaves no entry (the key is deleted);
//   - every record that does not win is released (Superseded), so the
//     log's live-byte accounting, which Scan restarts, is exact again.

// rebuildStats counts what a rebuild did.
type rebuildStats struct {
	records, puts, deletes, superseded uint64
}

// rebuild returns the index's RebuildFunc for this namespace.
func (n *namespace) rebuild() index.RebuildFunc {
	return func(ctx context.Context, ix *index.Index) error {
		t := time.Now()
		stats, err := n.rebuildFrom(ctx, ix)
		if err != nil {
			return err
		}
		d := time.Since(t)
		rate := 0.0
		if d > 0 {
			rate = float64(stats.records) / d.Seconds()
		}
		n.log.Info("log scanned into the index", "log_records", stats.records, "puts", stats.puts, "deletes", stats.deletes,
			"superseded", stats.superseded, "duration", d, "records_per_s", int64(rate))
		return nil
	}
}

func (n *namespace) rebuildFrom(ctx context.Context, ix *index.Index) (rebuildStats, error) {
	// What a rebuild allocates stays live until it ends (the builder's
	// records, the sort of Finish) or is recycled (the scan batches):
	// garbage collections during it find next to nothing to free.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	sc := n.preScan
	n.preScan = nil
	if sc == nil {
		sc = n.startScan(ctx)
	}
	var superseded uint64
	b, err := ix.NewBuilder(index.BuildOptions{Superseded: func(r index.Record) {
		superseded++
		n.release(&r)
	}})
	if err != nil {
		sc.stop()
		return rebuildStats{}, fmt.Errorf("namespace %s: rebuild: %w", n.name, err)
	}
	if err := sc.feed(b); err != nil {
		return sc.stats, fmt.Errorf("namespace %s: scan log: %w", n.name, err)
	}
	st := sc.stats
	if _, err := b.Finish(ctx); err != nil {
		return st, fmt.Errorf("namespace %s: build the index from the log: %w", n.name, err)
	}
	st.superseded = superseded
	return st, nil
}
