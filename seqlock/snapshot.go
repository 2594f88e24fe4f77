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
	var err error
	for {
		var done bool
		if done, err = t.snapshotOnce(&w, dst, seqs); done || err != nil {
			break
		}
		w.retries++
		if err = w.backoff(); err != nil {
			break
		}
	}
	if w.retries > 0 {
		t.st.overlappedSnapshots.Add(1)
		t.st.snapshotRetries.Add(w.retries)
	}
	return t.countErr(err)
}

// snapshotOnce makes one attempt: a first pass that loads each record's
// sequence word and copies its payload, and a second pass that checks
// that no sequence word changed. It reports success, or returns the
// failure that must not be retried.
func (t *Table) snapshotOnce(w *waiter, dst [][]uint64, seqs []uint64) (bool, error) {
	seg := t.seg
	for i := range t.records {
		rec := t.record(i)
		s := seg.Load64(rec)
		if s&seqBusy != 0 {
			w.rec = i
			return false, w.awaitRead(rec, s)
		}
		if s&seqTorn != 0 {
			t.st.torn.Add(1)
			return false, tornErr("snapshot", i)
		}
		seqs[i] = s
		seg.LoadWords(rec+offPayload, dst[i])
	}
	for i := range t.records {
		if seg.Load64(t.record(i)) != seqs[i] {
			return false, nil
		}
	}
	return true, nil
}
