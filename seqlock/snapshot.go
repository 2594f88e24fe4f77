package seqlock

import "strconv"

// Snapshot copies the payload of every record into dst (len(dst) ==
// Records(), each row of length Words()) as of one instant: the result is
// exactly the table's content at a moment between the call's start and
// its return, with each record holding the complete payload of one write
// (see the package documentation for the argument).
//
// It fails with ErrLength on bad buffers, ErrTorn naming the first record
// that is recovered but not rewritten, a *StalledError for a record whose
// writer is dead or not progressing, and ErrStarved if writers changed
// some record during every attempt for MaxWait. On error dst holds partial
// data.
func (t *Table) Snapshot(dst [][]uint64) error {
	if len(dst) != t.records {
		return lengthErr("snapshot", "dst", len(dst), t.records)
	}
	for i, row := range dst {
		if len(row) != t.words {
			return lengthErr("snapshot", "dst row "+strconv.Itoa(i), len(row), t.words)
		}
	}
	seqs := make([]uint64, t.records)
	w := waiter{t: t, op: "snapshot", rec: -1}
	for {
		if t.snapshotOnce(&w, dst, seqs) {
			if w.retries > 0 {
				t.st.overlappedSnapshots.Add(1)
				t.st.snapshotRetries.Add(w.retries)
			}
			return nil
		}
		if w.err != nil {
			if w.retries > 0 {
				t.st.overlappedSnapshots.Add(1)
				t.st.snapshotRetries.Add(w.retries)
			}
			return t.countErr(w.err)
		}
		w.retries++
		if err := w.backoff(); err != nil {
			t.st.overlappedSnapshots.Add(1)
			t.st.snapshotRetries.Add(w.retries)
			return t.countErr(err)
		}
	}
}

// snapshotOnce makes one attempt: a first pass that loads each record's
// sequence word and copies its payload, and a second pass that checks
// that no sequence word changed. It reports success; on a failure that
// must not be retried it sets w.err.
func (t *Table) snapshotOnce(w *waiter, dst [][]uint64, seqs []uint64) bool {
	seg := t.seg
	for i := range t.records {
		rec := t.record(i)
		s := seg.Load64(rec)
		if s&seqBusy != 0 {
			w.rec = i
			w.err = w.awaitRead(rec, s)
			return false
		}
		if s&seqTorn != 0 {
			t.st.torn.Add(1)
			w.err = tornErr("snapshot", i)
			return false
		}
		seqs[i] = s
		seg.LoadWords(rec+offPayload, dst[i])
	}
	for i := range t.records {
		if seg.Load64(t.record(i)) != seqs[i] {
			return false
		}
	}
	return true
}
