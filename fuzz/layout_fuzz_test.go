package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

// layoutSeedSpecs are the specs of the valid headers the layout targets
// start from, so that mutations get past the magic and the checksum.
func layoutSeedSpecs() []layout.Spec {
	full := layout.Spec{Kind: layout.KindLease}
	for i := range layout.MaxFields {
		full.Fields = append(full.Fields, layout.Field{Name: "f" + string(rune('a'+i)), Value: uint64(i) * 0x0101010101})
	}
	for i := range layout.MaxSections {
		full.Sections = append(full.Sections, layout.SectionSpec{Name: "sec_" + string(rune('A'+i)), Size: uint64(i * 100)})
	}
	return []layout.Spec{
		{Kind: layout.KindTest},
		{Kind: layout.KindCluster, Fields: []layout.Field{{Name: "max_nodes", Value: 16}, {Name: "partitions", Value: 4096}}},
		{Kind: layout.KindPool, Sections: []layout.SectionSpec{{Name: "pool", Size: 288}, {Name: "elems", Size: 24 * 8}}},
		{Kind: layout.KindIndex, Fields: []layout.Field{{Name: "a", Value: 1}},
			Sections: []layout.SectionSpec{{Name: "empty", Size: 0}, {Name: "x", Size: 1}, {Name: "0123456789abcdef", Size: 64}}},
		full,
	}
}

// seedImage builds a segment image the way package arena writes one: the
// immutable part from Encode, then magic, init generation, checksum and
// state words.
func seedImage(spec layout.Spec, st layout.State) []byte {
	p, err := spec.Plan()
	if err != nil {
		panic(err) // the seed specs are valid
	}
	b := make([]byte, p.TotalSize)
	id := procid.Identity{PID: 1234, StartTime: 5678, BootID: [16]byte{0xb0, 0x07}, PIDNS: 4026531836}
	layout.Encode(b, p, id, time.Unix(1700000000, 42))
	ne := binary.NativeEndian
	ne.PutUint64(b[layout.OffMagic:], layout.Magic)
	ne.PutUint64(b[layout.OffInitGen:], 1)
	for i, w := range id.Pack() {
		ne.PutUint64(b[layout.OffInitializer+8*i:], w)
	}
	ne.PutUint64(b[layout.OffChecksum:], layout.Checksum(b))
	ne.PutUint64(b[layout.OffState:], layout.StateWord(st, 1234))
	return b
}

func addLayoutSeeds(f *testing.F) {
	states := []layout.State{layout.StateEmpty, layout.StateInitializing, layout.StateReady, layout.StateClean, layout.StateRetired}
	for _, spec := range layoutSeedSpecs() {
		for _, st := range states {
			b := seedImage(spec, st)
			f.Add(b, uint64(len(b)))
			f.Add(b[:layout.HeaderSize], uint64(len(b))+4096)
		}
	}
	f.Add(make([]byte, layout.HeaderSize), uint64(layout.HeaderSize))
	f.Add([]byte{}, uint64(0))
	f.Add(seedImage(layoutSeedSpecs()[1], layout.StateReady)[:100], uint64(100))
}

// FuzzLayoutCheck feeds arbitrary bytes and segment lengths to
// layout.Check. Most mutations of a valid header fail the checksum; see
// FuzzLayoutCheckResealed for the validation behind it.
func FuzzLayoutCheck(f *testing.F) {
	addLayoutSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, segLen uint64) {
		checkHeader(t, b, segLen)
	})
}

// FuzzLayoutCheckResealed recomputes the checksum of the fuzzed header
// before checking it, so that the fuzzer explores the validation of
// counts, names, sizes and sections that follows the checksum.
func FuzzLayoutCheckResealed(f *testing.F) {
	addLayoutSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, segLen uint64) {
		if len(b) >= layout.HeaderSize {
			b = bytes.Clone(b) // the engine's input must not be modified
			binary.NativeEndian.PutUint64(b[layout.OffChecksum:], layout.Checksum(b))
		}
		checkHeader(t, b, segLen)
	})
}

// FuzzLayoutCheckEdits applies fuzzed edits to one of the valid seed
// images, reseals it, and checks it: each edit is 3 bytes, a little-endian
// offset into the immutable part and the byte to store there. Small
// inputs that mutate a valid header field by field reach the checks after
// the checksum far more often than mutations of a whole image do.
func FuzzLayoutCheckEdits(f *testing.F) {
	specs := layoutSeedSpecs()
	edit := func(off int, v byte) []byte { return []byte{byte(off), byte(off >> 8), v} }
	f.Add(uint8(0), []byte{}, int64(0))
	f.Add(uint8(1), edit(layout.OffFields+layout.FieldSize+1, 'a'), int64(0))                          // duplicate-ish field name
	f.Add(uint8(4), edit(layout.OffSections+layout.SectionSize+4, 'A'), int64(0))                      // duplicate section name
	f.Add(uint8(2), edit(layout.OffSections+layout.NameLen, 0x41), int64(-1))                          // misaligned section
	f.Add(uint8(3), edit(layout.OffNumSections, 17), int64(4096))                                      // too many sections
	f.Add(uint8(4), edit(layout.OffTotalSize+1, 0xff), int64(1<<20))                                   // total size
	f.Add(uint8(1), append(edit(layout.OffMinor, 9), edit(layout.OffState, 7)...), int64(0))           // newer minor
	f.Add(uint8(1), edit(layout.OffReservedMutable+5, 1), int64(0))                                    // reserved mutable word
	f.Add(uint8(1), edit(layout.OffPadWordSize, 1), int64(0))                                          // pad after the word size
	f.Add(uint8(2), edit(layout.OffPadCounts+7, 0x80), int64(0))                                       // pad after the counts
	f.Add(uint8(1), edit(layout.OffFields+2*layout.FieldSize+3, 'x'), int64(0))                        // unused field slot
	f.Add(uint8(0), edit(layout.OffSections+layout.SectionSize-1, 1), int64(0))                        // unused section slot
	f.Add(uint8(4), edit(layout.OffReservedTail+7, 0xff), int64(0))                                    // reserved tail (all slots used)
	f.Add(uint8(1), append(edit(layout.OffMinor, 3), edit(layout.OffReservedTail, 1)...), int64(0))    // newer minor's reserved byte
	f.Add(uint8(3), edit(layout.OffPageSize+1, 0x01), int64(0))                                        // page size 256 (little endian): too small
	f.Add(uint8(3), edit(layout.OffPageSize+2, 0x01), int64(0))                                        // 69632: not a power of two
	f.Add(uint8(3), append(edit(layout.OffPageSize+1, 0), edit(layout.OffPageSize+2, 1)...), int64(0)) // 64 KiB: another machine's
	f.Fuzz(func(t *testing.T, seed uint8, edits []byte, segLenDelta int64) {
		spec := specs[int(seed)%len(specs)]
		st := layout.State(seed / uint8(len(specs)) % 6)
		b := seedImage(spec, st)
		for ; len(edits) >= 3; edits = edits[3:] {
			off := int(edits[0]) | int(edits[1])<<8
			if off < len(b) && off != layout.OffChecksum {
				b[off] = edits[2]
			}
		}
		binary.NativeEndian.PutUint64(b[layout.OffChecksum:], layout.Checksum(b))
		segLen := uint64(len(b)) + uint64(segLenDelta)
		if segLenDelta < 0 && uint64(-segLenDelta) > uint64(len(b)) {
			segLen = 0
		}
		checkHeader(t, b, segLen)
	})
}

// checkHeader asserts Check's contract on one input: a typed error of a
// single kind (with a header only for ErrNotReady), or a header whose
// every count, name, offset and size is consistent and within segLen.
func checkHeader(t *testing.T, b []byte, segLen uint64) {
	h, err := layout.Check(b, segLen)
	if err != nil {
		var ce *layout.CheckError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T) is not a *layout.CheckError", err, err)
		}
		if errors.Is(err, layout.ErrNotReady) {
			if h == nil || (h.State != layout.StateEmpty && h.State != layout.StateInitializing) {
				t.Fatalf("ErrNotReady with header %+v", h)
			}
		} else if h != nil {
			t.Fatalf("error %v with a header %+v", err, h)
		}
		return
	}
	if h == nil {
		t.Fatal("nil header without an error")
	}
	if len(b) < layout.HeaderSize || segLen < layout.HeaderSize {
		t.Fatalf("accepted %d bytes of a %d-byte segment", len(b), segLen)
	}
	switch h.State {
	case layout.StateReady, layout.StateClean, layout.StateRetired:
	default:
		if h.Minor <= layout.Minor {
			t.Fatalf("accepted state %v at minor %d", h.State, h.Minor)
		}
	}
	if h.Major != layout.Major || h.WordSize != uint8(unsafe.Sizeof(uintptr(0))) {
		t.Fatalf("accepted version %d.%d, word size %d", h.Major, h.Minor, h.WordSize)
	}
	if h.PageSize != uint32(os.Getpagesize()) {
		t.Fatalf("accepted page size %d, this machine has %d", h.PageSize, os.Getpagesize())
	}
	if h.Minor <= layout.Minor {
		checkReservedZero(t, b, len(h.Fields), len(h.Sections))
	}
	if h.Checksum != layout.Checksum(b) {
		t.Fatalf("accepted checksum %#x, computed %#x", h.Checksum, layout.Checksum(b))
	}
	if h.TotalSize < layout.HeaderSize || h.TotalSize > segLen {
		t.Fatalf("total size %d outside [%d, %d]", h.TotalSize, layout.HeaderSize, segLen)
	}
	if len(h.Fields) > layout.MaxFields || len(h.Sections) > layout.MaxSections {
		t.Fatalf("%d fields, %d sections", len(h.Fields), len(h.Sections))
	}
	names := map[string]bool{}
	for _, f := range h.Fields {
		checkName(t, f.Name)
		if names[f.Name] {
			t.Fatalf("field %q twice", f.Name)
		}
		names[f.Name] = true
	}
	clear(names)
	prevEnd := uint64(layout.HeaderSize)
	for _, s := range h.Sections {
		checkName(t, s.Name)
		if names[s.Name] {
			t.Fatalf("section %q twice", s.Name)
		}
		names[s.Name] = true
		if s.Offset%layout.SectionAlign != 0 {
			t.Fatalf("section %q at %d is not %d-aligned", s.Name, s.Offset, layout.SectionAlign)
		}
		if s.Offset < prevEnd {
			t.Fatalf("section %q at %d overlaps what ends at %d", s.Name, s.Offset, prevEnd)
		}
		if s.Size > h.TotalSize || s.Offset > h.TotalSize-s.Size {
			t.Fatalf("section %q [%d,+%d) past the total size %d", s.Name, s.Offset, s.Size, h.TotalSize)
		}
		prevEnd = s.Offset + s.Size
	}
	// A header matches the spec it describes, and checking is a function
	// of the input.
	spec := layout.Spec{Kind: h.Kind, Fields: h.Fields}
	for _, s := range h.Sections {
		spec.Sections = append(spec.Sections, layout.SectionSpec{Name: s.Name, Size: s.Size})
	}
	if err := h.Match(spec); err != nil {
		t.Fatalf("header does not match its own spec: %v", err)
	}
	h2, err := layout.Check(b, segLen)
	if err != nil || h2.Checksum != h.Checksum || len(h2.Sections) != len(h.Sections) || h2.TotalSize != h.TotalSize {
		t.Fatalf("second Check differs: %+v, %v", h2, err)
	}
}

// checkReservedZero asserts that the reserved bytes of an accepted header
// of this minor are zero.
func checkReservedZero(t *testing.T, b []byte, nf, ns int) {
	for _, r := range [][2]int{
		{layout.OffReservedMutable, layout.MutableEnd},
		{layout.OffPadWordSize, layout.OffPageSize},
		{layout.OffPadCounts, layout.OffTotalSize},
		{layout.OffFields + nf*layout.FieldSize, layout.OffSections},
		{layout.OffSections + ns*layout.SectionSize, layout.HeaderSize},
	} {
		for i := r[0]; i < r[1]; i++ {
			if b[i] != 0 {
				t.Fatalf("accepted reserved byte %d = %#x", i, b[i])
			}
		}
	}
}

func checkName(t *testing.T, n string) {
	if n == "" || len(n) > layout.NameLen {
		t.Fatalf("name %q has length %d", n, len(n))
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x21 || n[i] > 0x7e {
			t.Fatalf("name %q has byte %#x", n, n[i])
		}
	}
}
