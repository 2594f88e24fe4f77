// Package layout defines the header every shmkit segment starts with: magic,
// format version, segment kind, platform facts, the configuration fingerprint
// as named fields, a section directory, the segment state, the creator's
// identity and a checksum over the immutable part.
//
// The header is 1024 bytes. Offsets are in bytes from the start of the segment;
// every multi-byte integer is stored in the machine's byte order (recorded in
// ByteOrderMark so that a file copied to another machine is refused).
//
//	 0        8        16       24       32                               72     128
//	+--------+--------+--------+--------+--------------------------------+------+
//	| magic  | state  | check- | init   | initializer identity (5 words) | rsvd |  mutable
//	|        | word   | sum    | gen    |                                |      |  (atomic words)
//	+--------+--------+--------+--------+--------------------------------+------+
//	128      130      132      136 137  140      144      148      150      152     160
//	+--------+--------+--------+---+----+--------+--------+--------+--------+-------+
//	| major  | minor  | byte-  |wsz|pad | page   | kind   | nfield | nsect  | pad   |   immutable
//	| u16    | u16    | order  |u8 |    | size   | u32    | u16    | u16    |       |   (checksummed)
//	+--------+--------+--------+---+----+--------+--------+--------+--------+-------+
//	160 total size u64 | 168 created unix ns u64 | 176 creator identity (5 words) -> 216
//	216 fields:   12 x { name [16]byte, value u64 }            = 288 bytes -> 504
//	504 sections: 16 x { name [16]byte, offset u64, size u64 }  = 512 bytes -> 1016
//	1016 reserved (8 bytes, zero)                                          -> 1024
//
// Reserved bytes (72–128 in the mutable part; the pads 137–140 and 152–160,
// the field and section slots past the counts, and 1016–1024 in the
// immutable part) are zero. Check refuses a header of this format minor or
// an older one whose reserved bytes are not zero (ErrCorrupt): nothing of
// this minor writes them, so a non-zero byte is damage or a forgery. A
// newer minor may give them a meaning, so their content is ignored there.
//
// The page size is the writer's os.Getpagesize(). Check accepts only this
// machine's page size: a valid page size (a power of two from 4 KiB to
// 1 MiB) that differs says the segment was written on another machine and
// is ErrPlatform, like a different word size; any other value is
// ErrCorrupt. Segments are machine-local (SysV keys, /dev/shm), so a
// mismatch is a copied file, and its layout may assume the writer's pages.
//
// The state word packs the state in its low 8 bits and, while initializing,
// the pid of the initializing process in its high 32 bits. The checksum
// (metro hash over bytes [128, 1024)) is stored with an atomic store after the
// immutable part is written and before the state becomes ready; a reader that
// sees state ready therefore sees a complete header.
//
// Compatibility: a segment is usable only by code of the same format major.
// Minor versions only add fields, sections or states that older code may
// ignore, so any minor of the same major is accepted, unless the caller's
// Spec.MinMinor demands a newer one.
package layout

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	metro "github.com/dgryski/go-metro"

	"github.com/shmkit/shmkit/procid"
)

// Format version of the header and of everything shmkit writes into segments.
const (
	Major = 1
	Minor = 0
)

// Magic identifies a shmkit segment: the bytes "shmkit\x00\x01" read as a
// little-endian word.
const Magic uint64 = 0x0100_7469_6b6d_6873

// ByteOrderMark is stored natively; read back in the other byte order it
// becomes 0x04030201.
const ByteOrderMark uint32 = 0x01020304

// Header geometry and field offsets: the one definition of the header layout.
const (
	HeaderSize = 1024

	OffMagic       = 0
	OffState       = 8
	OffChecksum    = 16
	OffInitGen     = 24
	OffInitializer = 32 // identity words of the process initializing now
	IdentityWords  = 5
	MutableEnd     = 128 // the checksum covers [MutableEnd, HeaderSize)

	OffMajor       = 128
	OffMinor       = 130
	OffByteOrder   = 132
	OffWordSize    = 136
	OffPageSize    = 140
	OffKind        = 144
	OffNumFields   = 148
	OffNumSections = 150
	OffTotalSize   = 160
	OffCreated     = 168
	OffCreator     = 176
	OffFields      = 216
	OffSections    = 504

	// Reserved byte ranges, zero in a header of this minor.
	OffReservedMutable = 72   // to MutableEnd: mutable words no minor has used yet
	OffPadWordSize     = 137  // 3 bytes after the word size
	OffPadCounts       = 152  // 8 bytes after the section count
	OffReservedTail    = 1016 // 8 bytes to HeaderSize

	// MinPageSize and MaxPageSize bound the page sizes Check accepts as
	// valid (each a power of two); only this machine's is accepted.
	MinPageSize = 4 << 10
	MaxPageSize = 1 << 20

	NameLen     = 16 // field and section names, NUL padded
	FieldSize   = NameLen + 8
	SectionSize = NameLen + 16
	MaxFields   = 12
	MaxSections = 16

	// SectionAlign is the alignment of every section: a cache line, so
	// sections never share one.
	SectionAlign = 64
)

// Compile-time checks that the diagram above and the constants agree.
var (
	_ [OffFields + MaxFields*FieldSize - OffSections]struct{}
	_ [OffSections - OffFields - MaxFields*FieldSize]struct{}
	_ [HeaderSize - 8 - OffSections - MaxSections*SectionSize]struct{}
	_ [OffCreator + IdentityWords*8 - OffFields]struct{}
	_ [IdentityWords - procid.Words]struct{}
	_ [MutableEnd - OffInitializer - IdentityWords*8]struct{}
	_ [OffReservedMutable - OffInitializer - IdentityWords*8]struct{}
	_ [OffInitializer + IdentityWords*8 - OffReservedMutable]struct{}
	_ [OffPadWordSize - OffWordSize - 1]struct{}
	_ [OffWordSize + 1 - OffPadWordSize]struct{}
	_ [OffPageSize - OffPadWordSize - 3]struct{}
	_ [OffPadWordSize + 3 - OffPageSize]struct{}
	_ [OffPadCounts - OffNumSections - 2]struct{}
	_ [OffNumSections + 2 - OffPadCounts]struct{}
	_ [OffTotalSize - OffPadCounts - 8]struct{}
	_ [OffPadCounts + 8 - OffTotalSize]struct{}
	_ [OffReservedTail - OffSections - MaxSections*SectionSize]struct{}
	_ [OffSections + MaxSections*SectionSize - OffReservedTail]struct{}
	_ [HeaderSize - OffReservedTail - 8]struct{}
	_ [OffReservedTail + 8 - HeaderSize]struct{}
)

// Kind says what a segment holds.
type Kind uint32

// Segment kinds.
const (
	KindTest      Kind = 1 // tests and benchmarks
	KindCluster   Kind = 2 // tended cluster state (partmap)
	KindIndex     Kind = 3 // persistent index arena
	KindPoolStage Kind = 4 // a growth stage of an element pool
	KindPool      Kind = 5 // an element pool's main segment
	KindLease     Kind = 6 // a standalone lease
)

func (k Kind) String() string {
	switch k {
	case KindTest:
		return "test"
	case KindCluster:
		return "cluster"
	case KindIndex:
		return "index"
	case KindPoolStage:
		return "pool-stage"
	case KindPool:
		return "pool"
	case KindLease:
		return "lease"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// State is the lifecycle state of a segment, kept in the low byte of the
// state word.
type State uint8

// Segment states.
const (
	StateEmpty        State = 0 // fresh memory: nobody has claimed initialization
	StateInitializing State = 1 // a process is initializing; see the initializer identity
	StateReady        State = 2 // initialized and in use
	StateClean        State = 3 // the last user shut down cleanly
	StateRetired      State = 4 // removed: attached processes must reattach
)

func (s State) String() string {
	switch s {
	case StateEmpty:
		return "empty"
	case StateInitializing:
		return "initializing"
	case StateReady:
		return "ready"
	case StateClean:
		return "clean-shutdown"
	case StateRetired:
		return "retired"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// StateWord packs a state and the pid of the process that set it:
//
//	 63                32 31            16 15        8 7         0
//	+--------------------+----------------+-----------+-----------+
//	| pid                | liveness slot  | zero      | state     |
//	+--------------------+----------------+-----------+-----------+
//
// The slot (see InitWord) is set only while initializing.
func StateWord(s State, pid uint32) uint64 { return uint64(s) | uint64(pid)<<32 }

// InitWord is the state word of a process that is initializing the
// segment: its pid and its liveness slot (procid.Slot in the segment's
// registry, locked before this word is written), so that an initializer
// killed before it records its identity is provably dead.
func InitWord(pid uint32, slot procid.Slot) uint64 {
	return StateWord(StateInitializing, pid) | uint64(slot)<<16
}

// StateSlot returns the liveness slot of an InitWord (0: none).
func StateSlot(w uint64) procid.Slot { return procid.Slot(w >> 16) }

// SplitStateWord is the inverse of StateWord.
func SplitStateWord(w uint64) (State, uint32) { return State(w & 0xff), uint32(w >> 32) }

// Field is one named configuration value of the fingerprint, e.g.
// max_nodes=16. Two processes may share a segment only if they agree on
// every field.
type Field struct {
	Name  string
	Value uint64
}

// SectionSpec asks for a named section of a given size.
type SectionSpec struct {
	Name string
	Size uint64
}

// Section is a placed section: its byte offset from the segment start and
// its size.
type Section struct {
	Name   string
	Offset uint64
	Size   uint64
}

// Spec describes the segment a process wants: its kind, configuration
// fingerprint and sections.
type Spec struct {
	Kind     Kind
	Fields   []Field
	Sections []SectionSpec
	// MinMinor is the oldest format minor this process can use (0: any).
	MinMinor uint16
}

// Plan is a Spec with its sections placed.
type Plan struct {
	Spec      Spec
	Sections  []Section
	TotalSize uint64
}

// Plan places the sections after the header, each aligned to SectionAlign,
// and computes the total size.
func (s Spec) Plan() (Plan, error) {
	if len(s.Fields) > MaxFields {
		return Plan{}, fmt.Errorf("layout: %d config fields, at most %d: %w", len(s.Fields), MaxFields, ErrSpec)
	}
	if len(s.Sections) > MaxSections {
		return Plan{}, fmt.Errorf("layout: %d sections, at most %d: %w", len(s.Sections), MaxSections, ErrSpec)
	}
	seen := map[string]bool{}
	for _, f := range s.Fields {
		if err := checkName(f.Name); err != nil {
			return Plan{}, fmt.Errorf("layout: field %q: %w", f.Name, err)
		}
		if seen["f:"+f.Name] {
			return Plan{}, fmt.Errorf("layout: field %q twice: %w", f.Name, ErrSpec)
		}
		seen["f:"+f.Name] = true
	}
	p := Plan{Spec: s}
	off := uint64(HeaderSize)
	for _, sec := range s.Sections {
		if err := checkName(sec.Name); err != nil {
			return Plan{}, fmt.Errorf("layout: section %q: %w", sec.Name, err)
		}
		if seen["s:"+sec.Name] {
			return Plan{}, fmt.Errorf("layout: section %q twice: %w", sec.Name, ErrSpec)
		}
		seen["s:"+sec.Name] = true
		if sec.Size > 1<<40 {
			return Plan{}, fmt.Errorf("layout: section %q size %d too large: %w", sec.Name, sec.Size, ErrSpec)
		}
		p.Sections = append(p.Sections, Section{Name: sec.Name, Offset: off, Size: sec.Size})
		off = alignUp(off+sec.Size, SectionAlign)
	}
	p.TotalSize = off
	return p, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func checkName(n string) error {
	if n == "" || len(n) > NameLen {
		return fmt.Errorf("name must be 1..%d bytes: %w", NameLen, ErrSpec)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("name has byte 0x%02x (printable ASCII only): %w", c, ErrSpec)
		}
	}
	return nil
}

// Header is a decoded, validated segment header.
type Header struct {
	State     State
	StatePID  uint32 // the pid recorded with the state (the initializer while initializing)
	Checksum  uint64
	InitGen   uint64 // how many times the segment was (re)initialized
	Major     uint16
	Minor     uint16
	WordSize  uint8
	PageSize  uint32
	Kind      Kind
	TotalSize uint64
	Created   time.Time
	Creator   procid.Identity
	Fields    []Field
	Sections  []Section
}

// Field returns the value of the named config field.
func (h *Header) Field(name string) (uint64, bool) {
	for _, f := range h.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

// Section returns the named section.
func (h *Header) Section(name string) (Section, bool) {
	for _, s := range h.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

var native = binary.NativeEndian

// Encode writes the immutable part of the header for plan into dst (at least
// HeaderSize bytes). It does not touch the magic, state or checksum words.
func Encode(dst []byte, p Plan, creator procid.Identity, created time.Time) {
	b := dst[MutableEnd:HeaderSize]
	clear(b)
	native.PutUint16(dst[OffMajor:], Major)
	native.PutUint16(dst[OffMinor:], Minor)
	native.PutUint32(dst[OffByteOrder:], ByteOrderMark)
	dst[OffWordSize] = uint8(unsafe.Sizeof(uintptr(0)))
	native.PutUint32(dst[OffPageSize:], uint32(os.Getpagesize()))
	native.PutUint32(dst[OffKind:], uint32(p.Spec.Kind))
	native.PutUint16(dst[OffNumFields:], uint16(len(p.Spec.Fields)))
	native.PutUint16(dst[OffNumSections:], uint16(len(p.Sections)))
	native.PutUint64(dst[OffTotalSize:], p.TotalSize)
	native.PutUint64(dst[OffCreated:], uint64(created.UnixNano()))
	for i, w := range creator.Pack() {
		native.PutUint64(dst[OffCreator+8*i:], w)
	}
	for i, f := range p.Spec.Fields {
		o := OffFields + i*FieldSize
		copy(dst[o:o+NameLen], f.Name)
		native.PutUint64(dst[o+NameLen:], f.Value)
	}
	for i, s := range p.Sections {
		o := OffSections + i*SectionSize
		copy(dst[o:o+NameLen], s.Name)
		native.PutUint64(dst[o+NameLen:], s.Offset)
		native.PutUint64(dst[o+NameLen+8:], s.Size)
	}
}

// Checksum computes the checksum over the immutable part of a header.
func Checksum(hdr []byte) uint64 {
	return metro.Hash64(hdr[MutableEnd:HeaderSize], Magic)
}

// Check validates a header image (at least the first HeaderSize bytes of a
// segment, or fewer, which is reported as truncated) taken from a segment of
// segLen bytes (pass len(b) when b is the whole segment). It never panics:
// every count, offset and length is bounds-checked, and each problem is a
// typed error (see the Err* values and *CheckError). A header in state
// initializing or empty is reported with ErrNotReady after the magic check;
// its immutable part is not trusted. A state byte this code does not know
// is corrupt, unless the header's minor is newer than Minor (a newer minor
// may add states that older code ignores). Duplicate field or section names
// are corrupt, as Spec.Plan never produces them. Reserved bytes must be
// zero (unless the header's minor is newer) and the page size must be this
// machine's; see the package comment.
func Check(b []byte, segLen uint64) (*Header, error) {
	if len(b) < 16 || segLen < 16 {
		return nil, cerr(ErrTruncated, "have %d bytes, a header needs %d", min(uint64(len(b)), segLen), HeaderSize)
	}
	magic := native.Uint64(b[OffMagic:])
	st, pid := SplitStateWord(native.Uint64(b[OffState:]))
	if magic != Magic {
		if magic == 0 && (st == StateEmpty || st == StateInitializing) {
			return &Header{State: st, StatePID: pid}, cerr(ErrNotReady, "state %s, no header yet", st)
		}
		if swapped(magic) == Magic {
			return nil, cerr(ErrByteOrder, "magic is byte-swapped: the segment was written on a machine of the other byte order")
		}
		return nil, cerr(ErrNotOurs, "magic %#016x, want %#016x", magic, Magic)
	}
	if len(b) < HeaderSize || segLen < HeaderSize {
		return nil, cerr(ErrTruncated, "have %d bytes, a header needs %d", min(uint64(len(b)), segLen), HeaderSize)
	}
	h := &Header{
		State:    st,
		StatePID: pid,
		Checksum: native.Uint64(b[OffChecksum:]),
		InitGen:  native.Uint64(b[OffInitGen:]),
	}
	switch st {
	case StateReady, StateClean, StateRetired:
	case StateEmpty, StateInitializing:
		return h, cerr(ErrNotReady, "state %s (pid %d)", st, pid)
	default:
		// Possibly a state added by a newer minor: decided once the
		// checksum and the version have been verified.
	}
	if bo := native.Uint32(b[OffByteOrder:]); bo != ByteOrderMark {
		return nil, cerr(ErrByteOrder, "byte-order mark %#08x, want %#08x", bo, ByteOrderMark)
	}
	if sum := Checksum(b); sum != h.Checksum {
		return nil, cerr(ErrChecksum, "header checksum %#016x, computed %#016x: the header was changed or torn", h.Checksum, sum)
	}
	h.Major = native.Uint16(b[OffMajor:])
	h.Minor = native.Uint16(b[OffMinor:])
	if h.Major != Major {
		return nil, &CheckError{Kind: ErrVersion, Detail: fmt.Sprintf("format %d.%d, this code reads major %d", h.Major, h.Minor, Major)}
	}
	if !knownState(st) && h.Minor <= Minor {
		return nil, cerr(ErrCorrupt, "state byte %d is not a known state", uint8(st))
	}
	h.WordSize = b[OffWordSize]
	if h.WordSize != uint8(unsafe.Sizeof(uintptr(0))) {
		return nil, cerr(ErrPlatform, "word size %d, this process has %d", h.WordSize, unsafe.Sizeof(uintptr(0)))
	}
	h.PageSize = native.Uint32(b[OffPageSize:])
	if mine := os.Getpagesize(); uint64(h.PageSize) != uint64(mine) {
		if !validPageSize(h.PageSize) {
			return nil, cerr(ErrCorrupt, "page size %d is not a power of two from %d to %d", h.PageSize, MinPageSize, MaxPageSize)
		}
		return nil, cerr(ErrPlatform, "page size %d, this machine has %d: the segment was written on another machine", h.PageSize, mine)
	}
	h.Kind = Kind(native.Uint32(b[OffKind:]))
	nf := int(native.Uint16(b[OffNumFields:]))
	ns := int(native.Uint16(b[OffNumSections:]))
	if nf > MaxFields {
		return nil, cerr(ErrCorrupt, "%d config fields, at most %d", nf, MaxFields)
	}
	if ns > MaxSections {
		return nil, cerr(ErrCorrupt, "%d sections, at most %d", ns, MaxSections)
	}
	if h.Minor <= Minor {
		if err := checkReserved(b, nf, ns); err != nil {
			return nil, err
		}
	}
	h.TotalSize = native.Uint64(b[OffTotalSize:])
	if h.TotalSize < HeaderSize {
		return nil, cerr(ErrCorrupt, "total size %d is smaller than the header", h.TotalSize)
	}
	if h.TotalSize > segLen {
		return nil, cerr(ErrTruncated, "header says %d bytes, the segment has %d", h.TotalSize, segLen)
	}
	h.Created = time.Unix(0, int64(native.Uint64(b[OffCreated:])))
	var w [procid.Words]uint64
	for i := range w {
		w[i] = native.Uint64(b[OffCreator+8*i:])
	}
	h.Creator = procid.Unpack(w)
	for i := 0; i < nf; i++ {
		o := OffFields + i*FieldSize
		name, err := decodeName(b[o : o+NameLen])
		if err != nil {
			return nil, cerr(ErrCorrupt, "config field %d: %v", i, err)
		}
		if _, dup := h.Field(name); dup {
			return nil, cerr(ErrCorrupt, "config field %q twice", name)
		}
		h.Fields = append(h.Fields, Field{Name: name, Value: native.Uint64(b[o+NameLen:])})
	}
	prevEnd := uint64(HeaderSize)
	for i := 0; i < ns; i++ {
		o := OffSections + i*SectionSize
		name, err := decodeName(b[o : o+NameLen])
		if err != nil {
			return nil, cerr(ErrCorrupt, "section %d: %v", i, err)
		}
		if _, dup := h.Section(name); dup {
			return nil, cerr(ErrCorrupt, "section %q twice", name)
		}
		s := Section{Name: name, Offset: native.Uint64(b[o+NameLen:]), Size: native.Uint64(b[o+NameLen+8:])}
		switch {
		case s.Offset%SectionAlign != 0:
			return nil, cerr(ErrCorrupt, "section %q offset %d is not %d-aligned", name, s.Offset, SectionAlign)
		case s.Offset < prevEnd:
			return nil, cerr(ErrCorrupt, "section %q at %d overlaps the header or the previous section (ends %d)", name, s.Offset, prevEnd)
		case s.Size > h.TotalSize || s.Offset > h.TotalSize-s.Size:
			return nil, cerr(ErrCorrupt, "section %q [%d,+%d) runs past the segment end %d", name, s.Offset, s.Size, h.TotalSize)
		}
		prevEnd = s.Offset + s.Size
		h.Sections = append(h.Sections, s)
	}
	return h, nil
}

// validPageSize reports whether p is a page size some machine may have.
func validPageSize(p uint32) bool {
	return p >= MinPageSize && p <= MaxPageSize && p&(p-1) == 0
}

// checkReserved reports the first non-zero reserved byte of a header with
// nf fields and ns sections (both within their maximum).
func checkReserved(b []byte, nf, ns int) error {
	ranges := [...]struct {
		from, to int
		what     string
	}{
		{OffReservedMutable, MutableEnd, "reserved mutable word"},
		{OffPadWordSize, OffPadWordSize + 3, "pad after the word size"},
		{OffPadCounts, OffPadCounts + 8, "pad after the section count"},
		{OffFields + nf*FieldSize, OffSections, "unused config field slot"},
		{OffSections + ns*SectionSize, OffReservedTail, "unused section slot"},
		{OffReservedTail, HeaderSize, "reserved tail"},
	}
	for _, r := range ranges {
		for i := r.from; i < r.to; i++ {
			if b[i] != 0 {
				return cerr(ErrCorrupt, "reserved byte %d (%s) is %#02x, want 0", i, r.what, b[i])
			}
		}
	}
	return nil
}

// knownState reports whether st is one of the states of this format minor.
func knownState(st State) bool { return st <= StateRetired }

func swapped(v uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return binary.BigEndian.Uint64(b[:])
}

func decodeName(b []byte) (string, error) {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", fmt.Errorf("name is not NUL padded")
		}
	}
	if err := checkName(string(b[:n])); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// Match checks that a validated header describes the segment spec asks for:
// same kind, same config fields with the same values, and the sections spec
// needs, each at least as large. Mismatches are *MismatchError values.
func (h *Header) Match(spec Spec) error {
	if h.Kind != spec.Kind {
		return &MismatchError{Field: "kind", HaveText: h.Kind.String(), WantText: spec.Kind.String()}
	}
	if spec.MinMinor > h.Minor {
		return &MismatchError{Field: "format_minor", Have: uint64(h.Minor), Want: uint64(spec.MinMinor)}
	}
	for _, f := range spec.Fields {
		v, ok := h.Field(f.Name)
		if !ok {
			return &MismatchError{Field: f.Name, HaveText: "absent", WantText: fmt.Sprint(f.Value)}
		}
		if v != f.Value {
			return &MismatchError{Field: f.Name, Have: v, Want: f.Value}
		}
	}
	for _, f := range h.Fields {
		found := false
		for _, g := range spec.Fields {
			found = found || g.Name == f.Name
		}
		if !found {
			return &MismatchError{Field: f.Name, HaveText: fmt.Sprint(f.Value), WantText: "absent"}
		}
	}
	for _, s := range spec.Sections {
		got, ok := h.Section(s.Name)
		if !ok {
			return &MismatchError{Field: "section " + s.Name, HaveText: "absent", WantText: fmt.Sprintf("%d bytes", s.Size)}
		}
		if got.Size < s.Size {
			return &MismatchError{Field: "section " + s.Name + " size", Have: got.Size, Want: s.Size}
		}
	}
	return nil
}
