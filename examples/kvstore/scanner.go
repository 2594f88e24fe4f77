package main

import (
	"context"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/index"
)

// A cold rebuild runs in two goroutines: a scanner reads and decodes the
// log (storage.Scan: read, checksum, decode) and turns each record into
// the index record the builder takes, in batches; the rebuild feeds the
// batches to the index.Builder, which is single-goroutine. On two cores
// the decode and the builder's Add overlap.
//
// When the start is known to be cold before the index is opened (a forced
// cold start), the scanner starts before index.Open, so that reading the
// log also overlaps the index's discard of the old segments and the
// creation of the new ones.

// scanBatch is how many records the scanner hands over at once.
const scanBatch = 1024

// scanAhead is how many batches the scanner may run ahead of the builder
// (with scanBatch, under 2 MiB of index records).
const scanAhead = 16

// scanItem is one log record as the builder takes it.
type scanItem struct {
	order uint64
	del   bool
	r     index.Record // for a tombstone only r.Digest is set
}

// scanner is a running scan of a namespace's log.
type scanner struct {
	batches chan []scanItem
	free    chan []scanItem
	cancel  context.CancelFunc
	done    chan struct{}
	// set once done is closed
	err   error
	stats rebuildStats
}

// startScan starts the scanner of n's log.
func (n *namespace) startScan(ctx context.Context) *scanner {
	ctx, cancel := context.WithCancel(ctx)
	sc := &scanner{batches: make(chan []scanItem, scanAhead), free: make(chan []scanItem, scanAhead+2),
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sc.done)
		defer close(sc.batches)
		batch := make([]scanItem, 0, scanBatch)
		send := func() bool {
			select {
			case sc.batches <- batch:
			case <-ctx.Done():
				return false
			}
			select {
			case batch = <-sc.free:
				batch = batch[:0]
			default:
				batch = make([]scanItem, 0, scanBatch)
			}
			return true
		}
		st := &sc.stats
		sc.err = n.st.Scan(func(rec storage.Record, loc storage.Location) error {
			st.records++
			if st.records%65536 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			it := scanItem{order: rec.Seq}
			if n.ignoreSeq {
				it.order = 0 // the tests' negative control: log order decides
			}
			if rec.Tombstone {
				st.deletes++
				it.del, it.r.Digest = true, rec.Digest
			} else {
				r, err := n.indexRecord(&rec, loc)
				if err != nil {
					return err
				}
				st.puts++
				it.r = r
			}
			batch = append(batch, it)
			if len(batch) == scanBatch && !send() {
				return ctx.Err()
			}
			return nil
		})
		if sc.err == nil && len(batch) > 0 && !send() {
			sc.err = ctx.Err()
		}
	}()
	return sc
}

// feed gives every scanned record to b and returns b's first error, or
// else the scan's; the scan is over when it returns.
func (sc *scanner) feed(b *index.Builder) error {
	var err error
	for batch := range sc.batches {
		if err == nil {
			for i := range batch {
				it := &batch[i]
				if it.del {
					err = b.Delete(it.order, it.r.Digest)
				} else {
					err = b.Add(it.order, it.r)
				}
				if err != nil {
					sc.cancel() // the scanner stops; drain what it sent
					break
				}
			}
		}
		select {
		case sc.free <- batch:
		default:
		}
	}
	<-sc.done
	sc.cancel()
	if err != nil {
		return err // the builder's, not the scanner's cancellation that followed
	}
	return sc.err
}

// stop ends the scan unused and waits for it.
func (sc *scanner) stop() {
	sc.cancel()
	for range sc.batches {
	}
	<-sc.done
}
