package index

// The shared records of the main segment besides the entries. Each is one
// definition; word numbers are relative to the record's start.
//
// Section "meta" (metaWords words):
//
//	 0 stages      stages in use, 1–256 (stage 0 is in the main segment)
//	 1 next        entries ever handed out, in allocation order (linear)
//	 2 free head   handle of the first free entry (0: none)
//	 3 free count  entries on the free list
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
//	13–15          reserved (zero)
//
// Section "sprigs" (Partitions × Sprigs words, partition-major, so sprig s
// of partition p is word p·Sprigs+s; eight sprigs per cache line). One
// word per sprig, its version and the root of its AVL tree, so that a
// reader learns both in one load and a sprig costs 8 bytes:
//
//	 63                        37 36                              0
//	+----------------------------+---------------------------------+
//	| version (27)               | root (37): handle of the tree's |
//	|   even while stable, odd   |   root entry, 0 when the sprig  |
//	|   while the writer changes |   is empty                      |
//	|   the sprig; wraps mod 2^27|                                 |
//	+----------------------------+---------------------------------+
//
// A reader accepts a walk only if the whole word is the same before and
// after it. A version wraps after 2^26 changes of its sprig; the writer
// adds one to meta word 12 (wraps) before it stores a wrapped version, and
// a reader also compares that word before and after, so no number of
// changes during a walk can go unseen.
// Section "parts" (Partitions records of partWords words):
//
//	0 count       entries in the partition
//	1 bytes       sum of the entries' sizes (storage bytes described)
//	2 tombstones  entries that are tombstones
//	3 reserved    (zero)
const (
	mStages     = 0
	mNext       = 1
	mFreeHead   = 2
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
	metaWords   = 16

	sprigRootBits   = handleBits
	sprigRootMask   = 1<<sprigRootBits - 1
	sprigVersionOne = 1 << sprigRootBits // one added to the version field

	pCount      = 0
	pBytes      = 1
	pTombstones = 2
	partWords   = 4
)

var (
	_ [metaWords - mWraps - 1]struct{}
	_ [mGate - mStorageSeq - 1]struct{}    // the gate is outside the sealed words
	_ [sprigRootBits - handleBits]struct{} // a handle fits the root field
	_ [handleBits - sprigRootBits]struct{}
	_ [sprigRootMask - uint64(MaxHandle)]struct{}
	_ [partWords - pTombstones - 1]struct{}
)

// sprigRoot returns the root handle of a sprig word.
func sprigRoot(w uint64) Handle { return Handle(w & sprigRootMask) }

// sprigStable reports whether a sprig word's version is even.
func sprigStable(w uint64) bool { return w&sprigVersionOne == 0 }

// Writer gate states (the payload of meta word mGate).
const (
	gateClean   = 0
	gateDirty   = 1
	gateClosing = 2
)

// maxDepth bounds every walk down a sprig (readers' Get, the writer's
// recursion, Scan's stack). A sprig is an AVL tree, whose height is at
// most 1.44·log2(n+2): under 54 for the 2^36 entries an index can hold,
// so a walk deeper than 256 is damage (ErrCorrupt).
const maxDepth = 256

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
