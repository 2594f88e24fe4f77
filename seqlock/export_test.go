package seqlock

import (
	"github.com/shmkit/shmkit/procid"
)

// Test-only access to internals, for the external test package.

// Bits of the sequence word.
const (
	SeqBusy = seqBusy
	SeqTorn = seqTorn
)

// ReadNoRecheck is the negative control: one attempt of Read without the
// second sequence check. It reports false if the record is busy;
// otherwise it copies the payload and reports true, so it can return torn
// data.
func (t *Table) ReadNoRecheck(i int, dst []uint64) bool {
	rec := t.record(i)
	if t.seg.Load64(rec)&seqBusy != 0 {
		return false
	}
	t.seg.LoadWords(rec+offPayload, dst)
	return true
}

// RawState returns record i's sequence and claim words.
func (t *Table) RawState(i int) (seq, claim uint64) {
	rec := t.record(i)
	return t.seg.Load64(rec), t.seg.Load64(rec + t.claimOff)
}

// SetRawState stores record i's sequence and claim words, to simulate
// what a dead writer leaves.
func (t *Table) SetRawState(i int, seq, claim uint64) {
	rec := t.record(i)
	t.seg.Store64(rec+t.claimOff, claim)
	t.seg.Store64(rec, seq)
}

// StorePayload stores record i's payload words without the protocol, to
// simulate a half-done write.
func (t *Table) StorePayload(i int, src []uint64) {
	t.seg.StoreWords(t.record(i)+offPayload, src)
}

// ClaimWord is claimWord.
func ClaimWord(slot procid.Slot, pid uint32) uint64 { return claimWord(slot, pid) }
