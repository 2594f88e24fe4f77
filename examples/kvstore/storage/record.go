package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record is one entry of the log: a version of the record a digest names,
// or, with Tombstone set, the proof that it was deleted.
//
// The byte-slice fields of a Record returned by [Storage.Read] are its own.
// Those of a Record handed to a [Storage.Scan] callback alias Scan's read
// buffer and are valid only during the call: copy what you keep.
type Record struct {
	// Namespace names the namespace, at most [MaxNamespace] bytes.
	Namespace []byte
	// Digest identifies the record (Aerospike's RIPEMD-160 of set and key).
	Digest [20]byte
	// Set and Key are the set name and user key, kept only so that a
	// server can answer with them; optional. At most [MaxSet] and
	// [MaxKey] bytes.
	Set, Key []byte
	// Generation counts the writes of this record, as the server keeps it.
	Generation uint32
	// VoidTime is when the record expires (server's clock, 0: never).
	VoidTime uint32
	// LastUpdate is the server's last-update time of the record.
	LastUpdate uint64
	// Tombstone marks a delete: a cold rebuild must drop the digest.
	Tombstone bool
	// Bins is the record's data, opaque to the storage.
	Bins []byte

	// Seq is assigned by [Storage.Append] (its value on input is ignored):
	// strictly increasing over the storage's life, and kept unchanged when
	// the defragmenter copies the record. Of two records of one digest the
	// one with the larger Seq supersedes the other (see [Storage.Scan]).
	Seq uint64
	// Copied is set on records the defragmenter wrote (copies of older
	// records, carrying their original Seq); ignored on input.
	Copied bool
}

// Limits of the variable-length fields of a [Record].
const (
	MaxNamespace = 31
	MaxSet       = 63
	MaxKey       = 1<<16 - 1
)

// Limits of a [Location], so that an index entry can pack one into 80
// bits: a 16-bit file id, a 40-bit offset and a 24-bit size.
const (
	MaxFileID = 1<<16 - 1
	MaxOffset = 1<<40 - 1
	MaxSize   = 1<<24 - 1
)

// Location is where a record's frame lies in the log.
type Location struct {
	File   uint32 // file id, 1..MaxFileID
	Offset uint64 // byte offset of the frame in the file
	Size   uint32 // frame size in bytes, header and checksum included
}

// String formats l as file:offset+size.
func (l Location) String() string { return fmt.Sprintf("%d:%d+%d", l.File, l.Offset, l.Size) }

// Frame layout. A frame is an 8-byte prefix, a fixed body header, and the
// variable fields:
//
//	0       4       8                                         60
//	+-------+-------+--------------- body header ---------------+----------------------+
//	| len   | crc   | seq lut gen void digest flags lens        | ns set key bins      |
//	+-------+-------+-------------------------------------------+----------------------+
//	 len: body length (frame size - 8); crc: CRC-32C of len's 4 bytes and the body.
//
// Body header, offsets from the start of the body:
const (
	bSeq      = 0  // uint64
	bLUT      = 8  // uint64
	bGen      = 16 // uint32
	bVoid     = 20 // uint32
	bDigest   = 24 // [20]byte
	bFlags    = 44 // uint8
	bNSLen    = 45 // uint8
	bSetLen   = 46 // uint8
	bReserved = 47 // uint8, zero
	bKeyLen   = 48 // uint16
	bReserv2  = 50 // uint16, zero
	bodyFixed = 52

	framePrefix = 8
	// MinFrame is the size of the smallest frame (all variable fields
	// empty).
	MinFrame = framePrefix + bodyFixed
)

// Flag bits.
const (
	flagTombstone = 1 << 0
	flagCopied    = 1 << 1
	flagsKnown    = flagTombstone | flagCopied
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameSize returns the size of rec's frame, the Size of its [Location].
func FrameSize(rec *Record) int {
	return MinFrame + len(rec.Namespace) + len(rec.Set) + len(rec.Key) + len(rec.Bins)
}

// check validates the field lengths of rec and the frame size.
func check(rec *Record) error {
	switch {
	case len(rec.Namespace) > MaxNamespace:
		return fmt.Errorf("%w: namespace is %d bytes, at most %d allowed", ErrInvalidRecord, len(rec.Namespace), MaxNamespace)
	case len(rec.Set) > MaxSet:
		return fmt.Errorf("%w: set name is %d bytes, at most %d allowed", ErrInvalidRecord, len(rec.Set), MaxSet)
	case len(rec.Key) > MaxKey:
		return fmt.Errorf("%w: user key is %d bytes, at most %d allowed", ErrInvalidRecord, len(rec.Key), MaxKey)
	case FrameSize(rec) > MaxSize:
		return fmt.Errorf("%w: record frame of %d bytes exceeds the %d a location can address; store smaller bins",
			ErrTooLarge, FrameSize(rec), MaxSize)
	}
	return nil
}

// EncodeRecord appends rec's frame to dst and returns the extended slice.
// rec.Seq and rec.Copied are encoded as they are. It fails with
// [ErrInvalidRecord] or [ErrTooLarge] if a field is too long.
func EncodeRecord(dst []byte, rec *Record) ([]byte, error) {
	if err := check(rec); err != nil {
		return dst, err
	}
	return encode(dst, rec), nil
}

// encode appends rec's frame to dst; rec must have passed check.
func encode(dst []byte, rec *Record) []byte {
	size := FrameSize(rec)
	start := len(dst)
	dst = append(dst, make([]byte, MinFrame)...)
	f := dst[start:]
	binary.LittleEndian.PutUint32(f[0:], uint32(size-framePrefix))
	b := f[framePrefix:]
	binary.LittleEndian.PutUint64(b[bSeq:], rec.Seq)
	binary.LittleEndian.PutUint64(b[bLUT:], rec.LastUpdate)
	binary.LittleEndian.PutUint32(b[bGen:], rec.Generation)
	binary.LittleEndian.PutUint32(b[bVoid:], rec.VoidTime)
	copy(b[bDigest:bDigest+20], rec.Digest[:])
	var flags byte
	if rec.Tombstone {
		flags |= flagTombstone
	}
	if rec.Copied {
		flags |= flagCopied
	}
	b[bFlags] = flags
	b[bNSLen] = byte(len(rec.Namespace))
	b[bSetLen] = byte(len(rec.Set))
	binary.LittleEndian.PutUint16(b[bKeyLen:], uint16(len(rec.Key)))
	dst = append(dst, rec.Namespace...)
	dst = append(dst, rec.Set...)
	dst = append(dst, rec.Key...)
	dst = append(dst, rec.Bins...)
	f = dst[start:]
	binary.LittleEndian.PutUint32(f[4:], frameCRC(f))
	return dst
}

// frameCRC is the CRC-32C of a whole frame's length word and body.
func frameCRC(f []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, f[0:4]), castagnoli, f[framePrefix:])
}

// frameLen returns the frame size announced by the prefix at b, or 0 if
// fewer than 4 bytes are there.
func frameLen(b []byte) uint64 {
	if len(b) < 4 {
		return 0
	}
	return uint64(binary.LittleEndian.Uint32(b)) + framePrefix
}

// DecodeRecord decodes the frame at the start of b into rec, whose byte
// slices then alias b. It returns the frame size. Errors wrap
// [ErrTruncated] when b ends inside the frame and [ErrCorrupt] when the
// frame is inconsistent or its checksum does not match; it never panics,
// whatever b holds.
func DecodeRecord(b []byte, rec *Record) (int, error) {
	if len(b) < framePrefix {
		return 0, fmt.Errorf("%w: %d bytes, a frame prefix needs %d", ErrTruncated, len(b), framePrefix)
	}
	n := frameLen(b)
	if n < MinFrame || n > MaxSize {
		return 0, fmt.Errorf("%w: frame length %d outside [%d, %d]", ErrCorrupt, n, MinFrame, MaxSize)
	}
	if uint64(len(b)) < n {
		return 0, fmt.Errorf("%w: frame of %d bytes, only %d present", ErrTruncated, n, len(b))
	}
	f := b[:n]
	if got, want := frameCRC(f), binary.LittleEndian.Uint32(f[4:]); got != want {
		return 0, fmt.Errorf("%w: frame checksum %#08x, computed %#08x", ErrCorrupt, want, got)
	}
	body := f[framePrefix:]
	flags := body[bFlags]
	nsLen, setLen := int(body[bNSLen]), int(body[bSetLen])
	keyLen := int(binary.LittleEndian.Uint16(body[bKeyLen:]))
	switch {
	case flags&^flagsKnown != 0:
		return 0, fmt.Errorf("%w: unknown flag bits %#02x", ErrCorrupt, flags&^flagsKnown)
	case body[bReserved] != 0 || binary.LittleEndian.Uint16(body[bReserv2:]) != 0:
		return 0, fmt.Errorf("%w: reserved bytes not zero", ErrCorrupt)
	case nsLen > MaxNamespace || setLen > MaxSet:
		return 0, fmt.Errorf("%w: namespace length %d or set length %d too long", ErrCorrupt, nsLen, setLen)
	case bodyFixed+nsLen+setLen+keyLen > len(body):
		return 0, fmt.Errorf("%w: field lengths %d+%d+%d exceed the %d-byte body", ErrCorrupt, nsLen, setLen, keyLen, len(body))
	}
	rec.Seq = binary.LittleEndian.Uint64(body[bSeq:])
	rec.LastUpdate = binary.LittleEndian.Uint64(body[bLUT:])
	rec.Generation = binary.LittleEndian.Uint32(body[bGen:])
	rec.VoidTime = binary.LittleEndian.Uint32(body[bVoid:])
	copy(rec.Digest[:], body[bDigest:bDigest+20])
	rec.Tombstone = flags&flagTombstone != 0
	rec.Copied = flags&flagCopied != 0
	p := bodyFixed
	rec.Namespace = body[p : p+nsLen : p+nsLen]
	p += nsLen
	rec.Set = body[p : p+setLen : p+setLen]
	p += setLen
	rec.Key = body[p : p+keyLen : p+keyLen]
	p += keyLen
	rec.Bins = body[p:len(body):len(body)]
	return int(n), nil
}
