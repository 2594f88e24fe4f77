package storage

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	metro "github.com/dgryski/go-metro"
)

// File header layout (80 bytes, little endian):
//
//	 0 magic "SHMKVLOG"    8 version u32    12 header size u32
//	16 storage UUID [16]
//	32 file id u32        36 flags u32 (0)
//	40 capacity u64: the file's maximum size, header included
//	48 order u64: creation number, increasing; log order of the files
//	56 base seq u64: the next Seq when the file was created
//	64 reserved [8] (0)   72 checksum u64: metro hash64 of bytes 0..72
const (
	hMagic    = 0
	hVersion  = 8
	hSize     = 12
	hUUID     = 16
	hFileID   = 32
	hFlags    = 36
	hCapacity = 40
	hOrder    = 48
	hBaseSeq  = 56
	hReserved = 64
	hChecksum = 72
	// HeaderSize is the size of a log file's header; the first record
	// of a file is at this offset.
	HeaderSize = 80

	// Version is the format version this package writes and reads.
	Version = 1
)

const fileMagic = "SHMKVLOG"

const checksumSeed = 0x53484d4b564c4f47 // "SHMKVLOG"

// fileHeader is the decoded header of a log file.
type fileHeader struct {
	uuid     [16]byte
	id       uint32
	capacity uint64
	order    uint64
	baseSeq  uint64
}

func (h *fileHeader) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b[hMagic:], fileMagic)
	binary.LittleEndian.PutUint32(b[hVersion:], Version)
	binary.LittleEndian.PutUint32(b[hSize:], HeaderSize)
	copy(b[hUUID:], h.uuid[:])
	binary.LittleEndian.PutUint32(b[hFileID:], h.id)
	binary.LittleEndian.PutUint64(b[hCapacity:], h.capacity)
	binary.LittleEndian.PutUint64(b[hOrder:], h.order)
	binary.LittleEndian.PutUint64(b[hBaseSeq:], h.baseSeq)
	binary.LittleEndian.PutUint64(b[hChecksum:], metro.Hash64(b[:hChecksum], checksumSeed))
	return b
}

// decodeHeader validates and decodes a file header. It never panics.
func decodeHeader(b []byte) (fileHeader, error) {
	var h fileHeader
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header is %d bytes, want %d", ErrTruncated, len(b), HeaderSize)
	}
	b = b[:HeaderSize]
	if string(b[hMagic:hMagic+8]) != fileMagic {
		return h, fmt.Errorf("%w: magic %q, want %q: not a kvstore log file", ErrCorrupt, b[hMagic:hMagic+8], fileMagic)
	}
	if got, want := binary.LittleEndian.Uint64(b[hChecksum:]), metro.Hash64(b[:hChecksum], checksumSeed); got != want {
		return h, fmt.Errorf("%w: header checksum %#016x, computed %#016x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[hVersion:]); v != Version {
		return h, fmt.Errorf("%w: format version %d, this build reads %d: use a matching build", ErrCorrupt, v, Version)
	}
	if n := binary.LittleEndian.Uint32(b[hSize:]); n != HeaderSize {
		return h, fmt.Errorf("%w: header size %d, want %d", ErrCorrupt, n, HeaderSize)
	}
	if f := binary.LittleEndian.Uint32(b[hFlags:]); f != 0 || binary.LittleEndian.Uint64(b[hReserved:]) != 0 {
		return h, fmt.Errorf("%w: unknown header flags %#x or reserved bytes set", ErrCorrupt, f)
	}
	copy(h.uuid[:], b[hUUID:])
	h.id = binary.LittleEndian.Uint32(b[hFileID:])
	h.capacity = binary.LittleEndian.Uint64(b[hCapacity:])
	h.order = binary.LittleEndian.Uint64(b[hOrder:])
	h.baseSeq = binary.LittleEndian.Uint64(b[hBaseSeq:])
	switch {
	case h.id == 0 || h.id > MaxFileID:
		return h, fmt.Errorf("%w: file id %d outside 1..%d", ErrCorrupt, h.id, MaxFileID)
	case h.capacity < HeaderSize+MinFrame || h.capacity > MaxOffset:
		return h, fmt.Errorf("%w: file capacity %d outside [%d, %d]", ErrCorrupt, h.capacity, HeaderSize+MinFrame, uint64(MaxOffset))
	}
	return h, nil
}

// fileName is the name of log file id.
func fileName(id uint32) string { return fmt.Sprintf("log-%08x.dat", id) }

// isFileName reports whether name is the name of a log file.
func isFileName(name string) bool {
	_, ok := parseFileName(name)
	return ok
}

// parseFileName returns the id of a log file name, or false.
func parseFileName(name string) (uint32, bool) {
	hex, ok := strings.CutPrefix(name, "log-")
	if !ok {
		return 0, false
	}
	if hex, ok = strings.CutSuffix(hex, ".dat"); !ok || len(hex) != 8 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 32)
	if err != nil || id == 0 || id > MaxFileID || fileName(uint32(id)) != name {
		return 0, false
	}
	return uint32(id), true
}

// State file (written at Close, removed by the first mutation after Open):
//
//	 0 magic "SHMKVSTA"  8 version u32  12 file count u32
//	16 UUID [16]         32 head file id u32  36 unplaced bytes u32 (saturating)
//	40 head end u64      48 next seq u64      56 next order u64
//	64 count × {id u32, reserved u32, dead bytes u64}
//	then checksum u64: metro hash64 of all that precedes
const (
	stateName     = "state.dat"
	stateFixed    = 64
	stateEntry    = 16
	stateMaxFiles = MaxFileID
)

const stateMagic = "SHMKVSTA"

// savedState is what a clean Close records.
type savedState struct {
	uuid      [16]byte
	head      uint32
	headEnd   uint64
	nextSeq   uint64
	nextOrder uint64
	unplaced  uint64 // saved as at most 2^32-1: enough to say a survey is due
	dead      map[uint32]uint64
}

func (s *savedState) encode() []byte {
	b := make([]byte, stateFixed, stateFixed+len(s.dead)*stateEntry+8)
	copy(b, stateMagic)
	binary.LittleEndian.PutUint32(b[8:], Version)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(s.dead)))
	copy(b[16:], s.uuid[:])
	binary.LittleEndian.PutUint32(b[32:], s.head)
	binary.LittleEndian.PutUint32(b[36:], uint32(min(s.unplaced, math.MaxUint32)))
	binary.LittleEndian.PutUint64(b[40:], s.headEnd)
	binary.LittleEndian.PutUint64(b[48:], s.nextSeq)
	binary.LittleEndian.PutUint64(b[56:], s.nextOrder)
	for id, dead := range s.dead {
		b = binary.LittleEndian.AppendUint32(b, id)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint64(b, dead)
	}
	return binary.LittleEndian.AppendUint64(b, metro.Hash64(b, checksumSeed))
}

func decodeState(b []byte) (*savedState, error) {
	if len(b) < stateFixed+8 {
		return nil, fmt.Errorf("%w: state file of %d bytes", ErrTruncated, len(b))
	}
	if string(b[:8]) != stateMagic || binary.LittleEndian.Uint32(b[8:]) != Version {
		return nil, fmt.Errorf("%w: state file magic or version", ErrCorrupt)
	}
	n := uint64(binary.LittleEndian.Uint32(b[12:]))
	if n > stateMaxFiles || uint64(len(b)) != stateFixed+n*stateEntry+8 {
		return nil, fmt.Errorf("%w: state file of %d bytes for %d files", ErrCorrupt, len(b), n)
	}
	body := b[:len(b)-8]
	if binary.LittleEndian.Uint64(b[len(b)-8:]) != metro.Hash64(body, checksumSeed) {
		return nil, fmt.Errorf("%w: state file checksum", ErrCorrupt)
	}
	s := &savedState{dead: make(map[uint32]uint64, n)}
	copy(s.uuid[:], b[16:32])
	s.head = binary.LittleEndian.Uint32(b[32:])
	s.unplaced = uint64(binary.LittleEndian.Uint32(b[36:]))
	s.headEnd = binary.LittleEndian.Uint64(b[40:])
	s.nextSeq = binary.LittleEndian.Uint64(b[48:])
	s.nextOrder = binary.LittleEndian.Uint64(b[56:])
	for e := body[stateFixed:]; len(e) >= stateEntry; e = e[stateEntry:] {
		s.dead[binary.LittleEndian.Uint32(e)] = binary.LittleEndian.Uint64(e[8:])
	}
	return s, nil
}
