package index

import "math/bits"

// The shared records of the main segment besides the entries. Each is one
// definition; word numbers are relative to the record's start.
//
// Section "meta" (metaWords words):
//
//	 0 stages      stages in use, 1–256 (stage 0 is in the main segment)
//	 1 next        entry lines ever handed out (the bump pointer, linear:
//	               stage·StageEntries + line)
//	 2 table lines lines in sprig tables (runs a sprig word points at)
//	 3 free count  lines in runs on the free lists
//	 4 live        entries in sprigs (the sum of the partition counts)
//	 5 uuid hi     storage identity recorded at the last clean shutdown:
//	 6 uuid lo       the storage UUID,
//	 7 committed     and its committed length
//	 8 seal        hash of words 0–7, 9 and 10 written at clean shutdown
//	 9 clean count clean shutdowns so far
//	10 storage seq   and its write sequence (StorageID.Seq)
//	11 gate        the writer gate, a fenced word (package lease):
//
//	    63                          24 23             2 1    0
//	   +------------------------------+----------------+------+
//	   | epoch of its last writer (40)| zero (22)      | state|
//	   +------------------------------+----------------+------+
//	   state: 0 clean (as at the last clean shutdown, nothing written
//	   since), 1 dirty (a writer has mutated since attaching), 2 closing
//	   (a writer is recording a clean shutdown). Not covered by the seal:
//	   every writer stamps it with its lease epoch when it attaches.
//	12 wraps       times a sprig's version wrapped (see "sprigs" below);
//	               not covered by the seal
//	13 busy        updates the writer has begun and not finished (its
//	               goroutines each add one before a Put, Delete or Update
//	               changes anything and take it back after): nonzero only
//	               while one runs, or after a writer was killed mid-update
//	               (Check then reads the traces as interrupted, not damage);
//	               not covered by the seal
//	14–15          reserved (zero)
//
// Every line handed out is in exactly one sprig table or one free run:
// table lines + free count = next.
//
// Section "sprigs" (Partitions × Sprigs words, partition-major, so sprig s
// of partition p is word p·Sprigs+s; eight sprigs per cache line). One
// word per sprig: its version, the size class of its table and the handle
// of the table's first line, so that a reader learns all three in one
// load and a sprig costs 8 bytes:
//
//	 63                  45 44          37 36                            0
//	+----------------------+--------------+-------------------------------+
//	| version (19)         | class (8)    | table (37): handle of the     |
//	|  even while stable,  |  size class  |   table's first line, 0 when  |
//	|  odd while the writer|  of the run  |   the sprig is empty          |
//	|  changes the sprig;  |  (classLines)|                               |
//	|  wraps mod 2^19      |              |                               |
//	+----------------------+--------------+-------------------------------+
//
// A reader accepts what it read only if the whole word is the same before
// and after. A version wraps after 2^18 changes of its sprig; the writer
// adds one to meta word 12 (wraps) before it stores a wrapped version, and
// a reader also compares that word before and after, so no number of
// changes during a read can go unseen.
//
// A sprig's table is a run of classLines(class) consecutive entry lines
// inside one stage: a sorted hash (see "Structures" in the package
// documentation).
//
// Section "counts" (Partitions × Sprigs words, numbered as "sprigs"): the
// number of entries in each sprig's table, 0 for an empty sprig (the
// writer's, to decide when a table grows or shrinks; readers do not need
// it). Changed under the sprig's odd version.
//
// Section "alloc" (allocWords words): word c is the head of the free list
// of size class c (0: empty), the handle of the first line of a free run
// of at least classLines(c) and fewer than classLines(c+1) lines. A free
// run is marked in its first and its last line (the same line for one
// line), word 5 (wFlags): flagFreeRun in the flags byte and the run's lines in the
// low 40 bits (never an entry's flags); its first line also holds the
// previous run of its list in word 0 (wPrevFree; 0: it is the head) and
// the next in word 1 (wNextFree). Its other lines hold garbage. Words numClasses… are zero.
//
// Section "parts" (Partitions records of partWords words):
//
//	0 count       entries in the partition
//	1 bytes       sum of the entries' sizes (storage bytes described)
//	2 tombstones  entries that are tombstones
//	3 reserved    (zero)
const (
	mStages     = 0
	mNext       = 1
	mTableLines = 2
	mFreeCount  = 3
	mLive       = 4
	mUUIDHi     = 5
	mUUIDLo     = 6
	mCommitted  = 7
	mSeal       = 8
	mCleanCount = 9
	mStorageSeq = 10
	mGate       = 11
	mWraps      = 12
	mBusy       = 13
	metaWords   = 16

	sprigTableBits  = handleBits
	sprigTableMask  = 1<<sprigTableBits - 1
	sprigClassShift = sprigTableBits
	sprigClassMask  = 0xff << sprigClassShift
	sprigRootBits   = sprigTableBits + 8 // the version's lowest bit
	sprigVersionOne = 1 << sprigRootBits // one added to the version field

	pCount      = 0
	pBytes      = 1
	pTombstones = 2
	partWords   = 4

	allocWords = 256
)

var (
	_ [metaWords - mBusy - 1]struct{}
	_ [mGate - mStorageSeq - 1]struct{}     // the gate is outside the sealed words
	_ [sprigTableBits - handleBits]struct{} // a handle fits the table field
	_ [handleBits - sprigTableBits]struct{}
	_ [sprigTableMask - uint64(MaxHandle)]struct{}
	_ [partWords - pTombstones - 1]struct{}
	_ [allocWords - numClasses]struct{}
	_ [64 - sprigRootBits - 19]struct{} // 19 version bits
	_ [sprigRootBits + 19 - 64]struct{}
)

// sprigTable returns the handle of a sprig word's table (0: empty).
func sprigTable(w uint64) Handle { return Handle(w & sprigTableMask) }

// sprigClass returns the size class of a sprig word's table.
func sprigClass(w uint64) uint64 { return (w & sprigClassMask) >> sprigClassShift }

// sprigStable reports whether a sprig word's version is even.
func sprigStable(w uint64) bool { return w&sprigVersionOne == 0 }

// Size classes of the runs that hold sprig tables: 1 to 15 lines one by
// one, then eight classes per doubling (16, 18, 20, … 30, 32, 36, … 60,
// 64, 72, …) up to 2^28 lines, a stage at its largest. Eight per doubling
// wastes about 4% of a table to rounding (memory per record); a run never
// crosses a stage, so a table is at most one stage.
const (
	smallClasses = 15
	perDoubling  = 8
	numClasses   = smallClasses + perDoubling*(ElemBits-4) + 1 // the last is 2^28 lines
)

// classLines returns the lines of a run of size class c (< numClasses).
func classLines(c uint64) uint64 {
	if c < smallClasses {
		return c + 1
	}
	m := c - smallClasses
	return (16 + 2*(m%perDoubling)) << (m / perDoubling)
}

// classFor returns the smallest class of at least n lines (numClasses if
// n is beyond the largest).
func classFor(n uint64) uint64 {
	if n <= smallClasses {
		return max(n, 1) - 1
	}
	// Doubling d: 16<<d ≤ n-1 < 32<<d, so the class is in d's or the next.
	d := uint64(max(bits.Len64(n-1), 5)) - 5
	for c := smallClasses + d*perDoubling; c < numClasses; c++ {
		if classLines(c) >= n {
			return c
		}
	}
	return numClasses
}

// homeLines returns how many of a table's n lines are home lines: the
// last n/32 (for n ≥ 32) are overflow lines, which only displaced entries
// use, so that a cluster of entries near the end need not grow the table.
// The loads below keep the home lines under 91% full (88% of n), so that
// clusters stay short whatever the table's size: with an eighth of
// overflow and growth at 93% of n, the home lines were 106% full before a
// grow and lookups lengthened with the table (BenchmarkPutFill at Sprigs
// 4: 4.5 lines a lookup at 2M records, 7.7 at 8M).
func homeLines(n uint64) uint64 { return n - n/32 }

// homeOf returns the home line of a digest whose home key is x in a table
// of n lines: x scaled to the home lines, so homes are monotone in x.
func homeOf(x, n uint64) uint64 {
	hi, _ := bits.Mul64(x, homeLines(n))
	return hi
}

// maxEntries is the most entries a table of n lines holds before an
// insert grows it: full for tiny tables, 88% from 10 lines on.
func maxEntries(n uint64) uint64 {
	if n < 10 {
		return n
	}
	return n * 88 / 100
}

// Load factors of a table the writer lays out anew: a bulk build sizes a
// sprig's table for buildLoad, a grow or a shrink for relayLoad (in
// percent), and a table shrinks once it is less than a third full.
const (
	buildLoad  = 82
	relayLoad  = 72
	shrinkLoad = 30
)

// Writer gate states (the payload of meta word mGate).
const (
	gateClean   = 0
	gateDirty   = 1
	gateClosing = 2
)

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// less compares digest words.
func less(a0, a1, a2, b0, b1, b2 uint64) bool {
	if a0 != b0 {
		return a0 < b0
	}
	if a1 != b1 {
		return a1 < b1
	}
	return a2 < b2
}

// seal is the clean-shutdown seal over the meta words it covers.
func seal(meta *[metaWords]uint64) uint64 {
	h := uint64(0x5eed_c1ea_4a11_0001)
	for i, w := range meta {
		if i == mSeal || i > mStorageSeq {
			continue
		}
		h = mix64(h ^ w + uint64(i))
	}
	return h | 1 // never zero
}
