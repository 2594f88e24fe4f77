package main

import (
	"context"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/index"
)

// A cold rebuild reads the log once (storage.Scan, in log order) into an
// index.Builder, which keeps one winner per digest and lays the empty
// index down in one pass (sorted, each sprig's table filled in digest
// order):
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
	var st rebuildStats
	b, err := ix.NewBuilder(index.BuildOptions{Superseded: func(r index.Record) {
		st.superseded++
		n.release(&r)
	}})
	if err != nil {
		return st, fmt.Errorf("namespace %s: rebuild: %w", n.name, err)
	}
	// order is the Builder's order key: the write sequence, or (the
	// negative control of the tests) nothing, so that log order decides.
	order := func(rec *storage.Record) uint64 {
		if n.ignoreSeq {
			return 0
		}
		return rec.Seq
	}
	scanErr := n.st.Scan(func(rec storage.Record, loc storage.Location) error {
		st.records++
		if st.records%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if rec.Tombstone {
			st.deletes++
			return b.Delete(order(&rec), rec.Digest)
		}
		r, err := n.indexRecord(&rec, loc)
		if err != nil {
			return err
		}
		st.puts++
		return b.Add(order(&rec), r)
	})
	if scanErr != nil {
		return st, fmt.Errorf("namespace %s: scan log: %w", n.name, scanErr)
	}
	if _, err := b.Finish(ctx); err != nil {
		return st, fmt.Errorf("namespace %s: build the index from the log: %w", n.name, err)
	}
	return st, nil
}
