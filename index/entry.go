package index

import (
	"encoding/binary"
	"fmt"
)

// An index entry is 48 bytes, six 8-byte words: a sorted hash needs no
// links, so an entry is the record's metadata and nothing else (Aerospike's
// 64-byte entries carry tree links). This is its one definition; every
// access goes through the named word numbers below and the atomic word
// accessors of package arena.
//
//	word  bits 63 ………………………………… 32 31 ………………………………… 0
//	     +------------------------------------------------+
//	  0  | digest bytes 0–7, read big-endian               |  wDigest0
//	     +------------------------------------------------+
//	  1  | digest bytes 8–15, read big-endian              |  wDigest1
//	     +------------------------+-------------+---------+
//	  2  | digest bytes 16–19 (BE) | generation  | file id |  wDigest2
//	     |        (32)             |    (16)     |  (16)   |
//	     +------------------------+-------------+---------+
//	  3  | void time (32, s)       | size (32, bytes)      |  wVoidSize
//	     +------------------------+-----------------------+
//	  4  | storage offset (64) or inline int64 value      |  wValue
//	     +----------+-------------+-----------------------+
//	  5  | flags (8)| reserved(14)| last update (42,      |  wFlags
//	     |          |             |  Unix ms, to 2109)    |
//	     +----------+-------------+-----------------------+
//
// The digest words hold the digest's bytes as big-endian numbers, so that
// comparing words compares digests in byte (memcmp) order. Flags:
// flagLive (an entry of a sprig table; a line without it is empty),
// flagTombstone, flagInline (wValue holds the value, data-in-index). A
// line is one entry's six words (entries are not cache-line aligned: four
// lines span three cache lines). The first and last line of a free run
// carry flagFreeRun and the run's lines in word 5 instead, and its first
// line the list links in words 0 and 1 (see "alloc" in shared.go).
const (
	EntrySize  = 48 // bytes per entry
	entryWords = EntrySize / 8

	wDigest0  = 0
	wDigest1  = 1
	wDigest2  = 2
	wVoidSize = 3
	wValue    = 4
	wFlags    = 5

	// wNextFree is the next-run link in the first line of a free run.
	wNextFree = wDigest1
	// wPrevFree is the previous-run link in the first line of a free run.
	wPrevFree = wDigest0

	lutBits   = 42
	lutMask   = 1<<lutBits - 1
	linkBits  = 40
	linkMask  = 1<<linkBits - 1
	flagShift = 56
	flagMask  = 0xff << flagShift

	flagLive      = 1
	flagTombstone = 2
	flagInline    = 4
	knownFlags    = flagLive | flagTombstone | flagInline
	// flagFreeRun marks the first and last line of a free run (with the
	// run's lines in the low 40 bits); never an entry's.
	flagFreeRun = 0x80
)

// MaxLastUpdate is the largest Record.LastUpdate an entry holds (42 bits
// of Unix milliseconds: the year 2109).
const MaxLastUpdate = lutMask

// Compile-time checks that the diagram and the constants agree.
var (
	_ [EntrySize - 48]struct{}
	_ [48 - EntrySize]struct{}
	_ [entryWords - 1 - wFlags]struct{}
	_ [wFlags + 1 - entryWords]struct{}
	_ [linkBits - handleBits]struct{}    // a handle fits a free-run link
	_ [flagShift - lutBits - 14]struct{} // flags, reserved bits and the
	_ [lutBits + 14 - flagShift]struct{} // last update fill word 5
	_ [lutBits - linkBits]struct{}       // a run's lines fit under the flags
)

// DigestSize is the size of a record digest (Aerospike's RIPEMD-160).
const DigestSize = 20

// Digest identifies a record: 20 bytes of a cryptographic hash of its key.
// The first 12 bits (byte 0 and the low nibble of byte 1, as Aerospike
// numbers partitions) choose the partition; the following bits choose the
// sprig within it.
type Digest [DigestSize]byte

// Partitions is the number of partitions of a namespace.
const Partitions = 4096

// Partition returns the partition of d: Aerospike's partition id.
func (d Digest) Partition() int { return int(binary.LittleEndian.Uint16(d[0:2]) & (Partitions - 1)) }

// digestWords returns d as the three comparison words of an entry (the
// third without generation and file id).
func (d Digest) words() (uint64, uint64, uint64) {
	return binary.BigEndian.Uint64(d[0:8]), binary.BigEndian.Uint64(d[8:16]), uint64(binary.BigEndian.Uint32(d[16:20])) << 32
}

func digestFromWords(w0, w1, w2 uint64) Digest {
	var d Digest
	binary.BigEndian.PutUint64(d[0:8], w0)
	binary.BigEndian.PutUint64(d[8:16], w1)
	binary.BigEndian.PutUint32(d[16:20], uint32(w2>>32))
	return d
}

// sprigBits returns the 28 bits after the partition bits, in digest byte
// order: the high nibble of byte 1 and bytes 2–4. Within one partition the
// digest's byte order follows these bits, so taking the top bits of them
// as the sprig number keeps each sprig a contiguous digest range and a
// partition scan in digest order.
func (d Digest) sprigBits() uint32 {
	return uint32(d[1]>>4)<<24 | uint32(d[2])<<16 | uint32(d[3])<<8 | uint32(d[4])
}

// Record is what an entry says about one record.
type Record struct {
	Digest     Digest
	Generation uint16 // Aerospike's record generation (wraps)
	VoidTime   uint32 // expiry, seconds of the caller's epoch; 0: never
	LastUpdate uint64 // Unix milliseconds of the last write
	// Storage location, when the index does not hold the data.
	FileID uint16
	Offset uint64
	Size   uint32
	// Value is the record's single integer bin when the namespace keeps
	// data in the index (Config.DataInIndex); Offset and FileID are then
	// unused.
	Value     int64
	Tombstone bool // a durable delete marker
}

// entry is an entry copied out of shared memory.
type entry [entryWords]uint64

func (e *entry) digestIs(w0, w1, w2 uint64) bool {
	return e[wDigest0] == w0 && e[wDigest1] == w1 && e[wDigest2]&^0xffffffff == w2
}

func (e *entry) flags() uint64 { return (e[wFlags] & flagMask) >> flagShift }

// record decodes e.
func (e *entry) record() Record {
	return e.recordOf(digestFromWords(e[wDigest0], e[wDigest1], e[wDigest2]))
}

// recordOf decodes e, whose digest the caller knows to be d (a Get that
// matched it), without decoding the digest words again.
func (e *entry) recordOf(d Digest) Record {
	r := Record{
		Digest:     d,
		Generation: uint16(e[wDigest2] >> 16),
		FileID:     uint16(e[wDigest2]),
		VoidTime:   uint32(e[wVoidSize] >> 32),
		Size:       uint32(e[wVoidSize]),
		LastUpdate: e[wFlags] & lutMask,
		Tombstone:  e.flags()&flagTombstone != 0,
	}
	if e.flags()&flagInline != 0 {
		r.Value = int64(e[wValue])
	} else {
		r.Offset = e[wValue]
	}
	return r
}

// encodeRecord returns the words of r's entry: the payload words 0–4 and
// word 5, its flags and last update.
func encodeRecord(r *Record, inline bool) (w [wFlags]uint64, fw uint64) {
	w[wDigest0], w[wDigest1], w[wDigest2] = r.Digest.words()
	w[wDigest2] |= uint64(r.Generation)<<16 | uint64(r.FileID)
	w[wVoidSize] = uint64(r.VoidTime)<<32 | uint64(r.Size)
	flags := uint64(flagLive)
	if inline {
		w[wValue] = uint64(r.Value)
		flags |= flagInline
	} else {
		w[wValue] = r.Offset
	}
	if r.Tombstone {
		flags |= flagTombstone
	}
	return w, flags<<flagShift | r.LastUpdate&lutMask
}

// Handle names an entry: stage (8 bits) and element (28 bits), plus one,
// so that the zero handle is null.
//
//	 35        28 27                        0
//	+------------+---------------------------+
//	| stage (8)  | element in the stage (28) |   = handle - 1
//	+------------+---------------------------+
//
// 256 stages of up to 2^28 entries give 2^36 entries per namespace, as
// Aerospike's index (256 stages × 2^28). The largest handle is 2^36; a
// sprig word stores it in 37 bits, a free run's link in 40.
type Handle uint64

// Handle geometry.
const (
	StageBits   = 8
	ElemBits    = 28
	MaxStages   = 1 << StageBits // stages per index
	MaxElems    = 1 << ElemBits  // entries per stage, at most
	handleBits  = StageBits + ElemBits + 1
	MaxHandle   = Handle(MaxStages * MaxElems) // the largest valid handle
	MaxCapacity = uint64(MaxStages) * MaxElems // entries per index, at most
)

// MakeHandle returns the handle of element elem of stage. It panics if
// either is out of range (a programming error).
func MakeHandle(stage, elem uint64) Handle {
	if stage >= MaxStages || elem >= MaxElems {
		panic(fmt.Sprintf("index: handle of stage %d element %d out of range", stage, elem))
	}
	return Handle(stage<<ElemBits|elem) + 1
}

// IsNull reports whether h is the null handle.
func (h Handle) IsNull() bool { return h == 0 }

// Stage returns the stage of a non-null handle.
func (h Handle) Stage() uint64 { return uint64(h-1) >> ElemBits }

// Elem returns the element number of a non-null handle within its stage.
func (h Handle) Elem() uint64 { return uint64(h-1) & (MaxElems - 1) }

// linear returns the position of h in allocation order for stages of
// stageElems entries: stage·stageElems + elem.
func (h Handle) linear(stageElems uint64) uint64 { return h.Stage()*stageElems + h.Elem() }

// handleAt is the inverse of linear.
func handleAt(linear, stageElems uint64) Handle {
	return MakeHandle(linear/stageElems, linear%stageElems)
}

// String formats h as stage/element ("null" for the null handle).
func (h Handle) String() string {
	if h.IsNull() {
		return "null"
	}
	return fmt.Sprintf("%d/%d", h.Stage(), h.Elem())
}
