package seqlock

import (
	"github.com/shmkit/shmkit/arena"
)

// Table region layout: the one definition of every offset in this
// package. All words are 64-bit, 8-byte aligned and accessed only with the
// arena word accessors (sync/atomic). An all-zero region is a valid, empty
// table: New stamps the geometry word on first use.
//
// The region starts with a 64-byte table header, followed by the records,
// each padded to a multiple of 64 bytes (a cache line) so that writers of
// different records never share a line:
//
//	 0        8        16       24                               64
//	+--------+--------+--------+---------------------------------+
//	| geom   | pidns  | mixed  | reserved (zero)                 |  table header
//	+--------+--------+--------+---------------------------------+
//	64                 64+stride            64+2*stride
//	+------------------+--------------------+-----
//	| record 0         | record 1           | ...
//	+------------------+--------------------+-----
//
// One record (w = payload words, stride = roundup(8*(w+2), 64)):
//
//	 0        8                              8+8w     16+8w         stride
//	+--------+------------------------------+--------+--------------+
//	| seq    | payload[0] ... payload[w-1]  | claim  | pad (zero)   |
//	+--------+------------------------------+--------+--------------+
//
// The sequence word sits right before the payload so that a reader of a
// record of up to 7 words touches a single cache line; the claim word,
// which only writers and waiting readers look at, follows the payload.
//
// Words:
//
//	geom   63..48 tag 0x5351 ("SQ") | 47..40 format | 39..16 records | 15..0 payload words
//	pidns  PID namespace inode of the first process that attached the table
//	mixed  1 once a process of another PID namespace attached it: pids in
//	       claim words are then not comparable, and only a writer's
//	       liveness slot can prove it dead
//	seq    63..2 version | 1 torn | 0 busy ("odd" = a write is in progress)
//	claim  0 = free; else 63..48 liveness slot | 47..32 zero | 31..0 pid
//	       of the writer holding the record. The slot (procid.Slot in the
//	       segment's liveness registry, 0: none) is locked by the writer
//	       for as long as it is attached, so a claim whose slot lock is
//	       free was left by a process that is gone, whatever its uid, PID
//	       namespace or /proc visibility. The pid is evidence only within
//	       one PID namespace (pidfd_open ESRCH) and names the writer in
//	       errors.
const (
	offGeom  = 0
	offPIDNS = 8
	offMixed = 16

	// headerSize is the size of the table header; records start here.
	headerSize = 64
	// lineSize is the record alignment.
	lineSize = 64

	// Within a record.
	offSeq     = 0
	offPayload = 8
	// The claim word is at offPayload + 8*words (see Table.claimOff).
	recordOverhead = 2 // words: seq and claim

	geomTag    = 0x5351
	geomFormat = 2 // 2: claim words name a liveness slot
)

// Bits of the sequence word.
const (
	seqBusy    = 1 << 0 // a writer holds the record and may be changing it
	seqTorn    = 1 << 1 // recovered from a dead writer and not rewritten since
	seqVersion = 4      // one version step
)

// Limits of a table's geometry (the fields of the geometry word).
const (
	// MaxRecords is the largest number of records in one table.
	MaxRecords = 1<<24 - 1
	// MaxWords is the largest payload of one record, in 64-bit words.
	MaxWords = 1<<16 - 1
)

// nextVersion returns the stable (not busy, not torn) sequence value that
// follows s: every transition out of a busy state increases the version,
// so a sequence value is never seen twice.
func nextVersion(s uint64) uint64 { return s&^(seqVersion-1) + seqVersion }

func geomWord(records, words int) uint64 {
	return uint64(geomTag)<<48 | uint64(geomFormat)<<40 | uint64(records)<<16 | uint64(words)
}

func splitGeom(g uint64) (tag, format uint64, records, words int) {
	return g >> 48, g >> 40 & 0xff, int(g >> 16 & MaxRecords), int(g & MaxWords)
}

// stride returns the size of one record in bytes.
func stride(words int) uint64 {
	return (8*uint64(words+recordOverhead) + lineSize - 1) &^ (lineSize - 1)
}

// SizeOf returns the size in bytes of a table of records records of words
// payload words each (header included), for sizing a segment section. It
// returns 0 if the geometry is invalid (records outside 1..MaxRecords or
// words outside 1..MaxWords).
func SizeOf(records, words int) uint64 {
	if records < 1 || records > MaxRecords || words < 1 || words > MaxWords {
		return 0
	}
	return headerSize + uint64(records)*stride(words)
}

// record returns the offset of record i's sequence word.
func (t *Table) record(i int) arena.Offset {
	return t.base + arena.Offset(i)*t.stride
}
