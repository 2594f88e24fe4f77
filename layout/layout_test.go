package layout_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

var ne = binary.NativeEndian

// testCreator is a fixed identity so that images are reproducible.
func testCreator() procid.Identity {
	return procid.Identity{PID: 4242, StartTime: 987654, BootID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, PIDNS: 4026531836}
}

var testCreated = time.Unix(1700000000, 123456789)

// fullSpec has config fields and sections.
func fullSpec() layout.Spec {
	return layout.Spec{
		Kind:     layout.KindCluster,
		Fields:   []layout.Field{{Name: "max_nodes", Value: 16}, {Name: "partitions", Value: 4096}},
		Sections: []layout.SectionSpec{{Name: "nodes", Size: 100}, {Name: "parts", Size: 4096}, {Name: "empty", Size: 0}, {Name: "tail", Size: 8}},
	}
}

// image builds a complete segment image of spec in state st, with the magic,
// state word, init generation and checksum set the way package arena sets
// them.
func image(t testing.TB, spec layout.Spec, st layout.State) []byte {
	t.Helper()
	p, err := spec.Plan()
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	b := make([]byte, p.TotalSize)
	layout.Encode(b, p, testCreator(), testCreated)
	ne.PutUint64(b[layout.OffMagic:], layout.Magic)
	ne.PutUint64(b[layout.OffState:], layout.StateWord(st, 4242))
	ne.PutUint64(b[layout.OffInitGen:], 1)
	reseal(b)
	return b
}

// reseal recomputes the checksum after an edit of the immutable part.
func reseal(b []byte) { ne.PutUint64(b[layout.OffChecksum:], layout.Checksum(b)) }

// checkErr asserts that err is a *layout.CheckError of kind want.
func checkErr(t *testing.T, err, want error) *layout.CheckError {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want kind %v", err, want)
	}
	var ce *layout.CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v (%T) is not a *layout.CheckError", err, err)
	}
	if ce.Kind != want {
		t.Fatalf("CheckError.Kind = %v, want %v", ce.Kind, want)
	}
	if !strings.HasPrefix(err.Error(), "layout: "+want.Error()+": ") || ce.Detail == "" {
		t.Fatalf("message %q: want prefix %q and a detail", err.Error(), "layout: "+want.Error()+": ")
	}
	return ce
}

func fieldOff(i int) int   { return layout.OffFields + i*layout.FieldSize }
func sectionOff(i int) int { return layout.OffSections + i*layout.SectionSize }

func putName(b []byte, off int, name string) {
	clear(b[off : off+layout.NameLen])
	copy(b[off:off+layout.NameLen], name)
}

func TestCheckRoundTrip(t *testing.T) {
	specs := map[string]layout.Spec{
		"full":     fullSpec(),
		"bare":     {Kind: layout.KindTest},
		"fields":   {Kind: layout.KindIndex, Fields: []layout.Field{{Name: "a", Value: 1}}},
		"sections": {Kind: layout.KindPool, Sections: []layout.SectionSpec{{Name: "x", Size: 1}}},
		"max": func() layout.Spec {
			s := layout.Spec{Kind: layout.KindLease}
			for i := range layout.MaxFields {
				s.Fields = append(s.Fields, layout.Field{Name: "field_" + string(rune('a'+i)), Value: uint64(i) << 60})
			}
			for i := range layout.MaxSections {
				s.Sections = append(s.Sections, layout.SectionSpec{Name: "0123456789abcde" + string(rune('A'+i)), Size: uint64(i * 65)})
			}
			return s
		}(),
	}
	for name, spec := range specs {
		for _, st := range []layout.State{layout.StateReady, layout.StateClean, layout.StateRetired} {
			t.Run(name+"/"+st.String(), func(t *testing.T) {
				p, err := spec.Plan()
				if err != nil {
					t.Fatal(err)
				}
				b := image(t, spec, st)
				h, err := layout.Check(b, uint64(len(b)))
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if h.State != st || h.StatePID != 4242 || h.InitGen != 1 || h.Checksum != layout.Checksum(b) {
					t.Errorf("state/pid/gen/sum = %v/%d/%d/%#x", h.State, h.StatePID, h.InitGen, h.Checksum)
				}
				if h.Major != layout.Major || h.Minor != layout.Minor || h.Kind != spec.Kind || h.TotalSize != p.TotalSize {
					t.Errorf("version %d.%d kind %v size %d", h.Major, h.Minor, h.Kind, h.TotalSize)
				}
				if h.WordSize != uint8(unsafe.Sizeof(uintptr(0))) || h.PageSize == 0 {
					t.Errorf("word size %d page size %d", h.WordSize, h.PageSize)
				}
				if !h.Created.Equal(testCreated) || h.Creator != testCreator() {
					t.Errorf("created %v creator %v", h.Created, h.Creator)
				}
				if len(h.Fields) != len(spec.Fields) {
					t.Fatalf("fields %v, want %v", h.Fields, spec.Fields)
				}
				for i, f := range spec.Fields {
					if h.Fields[i] != f {
						t.Errorf("field %d = %v, want %v", i, h.Fields[i], f)
					}
					if v, ok := h.Field(f.Name); !ok || v != f.Value {
						t.Errorf("Field(%q) = %d, %v", f.Name, v, ok)
					}
				}
				if len(h.Sections) != len(p.Sections) {
					t.Fatalf("sections %v, want %v", h.Sections, p.Sections)
				}
				for i, s := range p.Sections {
					if h.Sections[i] != s {
						t.Errorf("section %d = %v, want %v", i, h.Sections[i], s)
					}
					if got, ok := h.Section(s.Name); !ok || got != s {
						t.Errorf("Section(%q) = %v, %v", s.Name, got, ok)
					}
				}
				if _, ok := h.Field("nope"); ok {
					t.Error("Field(nope) found")
				}
				if _, ok := h.Section("nope"); ok {
					t.Error("Section(nope) found")
				}
				if err := h.Match(spec); err != nil {
					t.Errorf("Match(own spec): %v", err)
				}
				// A segment larger than the header says is fine.
				big := append(b, make([]byte, 4096)...)
				if _, err := layout.Check(big, uint64(len(big))); err != nil {
					t.Errorf("Check of a larger segment: %v", err)
				}
				// Only the header bytes, with the real segment length.
				if _, err := layout.Check(b[:layout.HeaderSize], uint64(len(b))); err != nil {
					t.Errorf("Check of the header alone: %v", err)
				}
			})
		}
	}
}

func TestEncodeLeavesMutableWords(t *testing.T) {
	p, err := fullSpec().Plan()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, layout.HeaderSize)
	for i := range layout.MutableEnd {
		b[i] = 0xee
	}
	for i := layout.MutableEnd; i < layout.HeaderSize; i++ {
		b[i] = 0x77 // Encode must clear stale bytes of the immutable part
	}
	layout.Encode(b, p, testCreator(), testCreated)
	for i := range layout.MutableEnd {
		if b[i] != 0xee {
			t.Fatalf("Encode wrote byte %d of the mutable part", i)
		}
	}
	if got := b[layout.HeaderSize-1]; got != 0 {
		t.Fatalf("reserved tail byte = %#x, want 0", got)
	}
	if ne.Uint32(b[layout.OffByteOrder:]) != layout.ByteOrderMark {
		t.Fatal("no byte-order mark")
	}
}

func TestCheckNotOurs(t *testing.T) {
	cases := map[string]func(b []byte){
		"wrong magic":       func(b []byte) { ne.PutUint64(b[layout.OffMagic:], 0xdeadbeefcafef00d) },
		"zero magic ready":  func(b []byte) { ne.PutUint64(b[layout.OffMagic:], 0) },
		"aerospike-ish":     func(b []byte) { copy(b, "ASMEMORY") },
		"magic off by one":  func(b []byte) { ne.PutUint64(b[layout.OffMagic:], layout.Magic+1) },
		"zero magic, state": func(b []byte) { ne.PutUint64(b[0:], 0); ne.PutUint64(b[8:], layout.StateWord(7, 1)) },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			b := image(t, fullSpec(), layout.StateReady)
			edit(b)
			h, err := layout.Check(b, uint64(len(b)))
			checkErr(t, err, layout.ErrNotOurs)
			if h != nil {
				t.Errorf("header %+v returned with ErrNotOurs", h)
			}
		})
	}
}

func TestCheckNotReady(t *testing.T) {
	t.Run("fresh zero memory", func(t *testing.T) {
		b := make([]byte, 8192)
		h, err := layout.Check(b, uint64(len(b)))
		checkErr(t, err, layout.ErrNotReady)
		if h == nil || h.State != layout.StateEmpty || h.StatePID != 0 {
			t.Fatalf("header %+v, want state empty", h)
		}
	})
	t.Run("zero memory, 16 bytes", func(t *testing.T) {
		h, err := layout.Check(make([]byte, 16), 1<<20)
		checkErr(t, err, layout.ErrNotReady)
		if h == nil || h.State != layout.StateEmpty {
			t.Fatalf("header %+v", h)
		}
	})
	t.Run("claimed, nothing written", func(t *testing.T) {
		b := make([]byte, 8192)
		ne.PutUint64(b[layout.OffState:], layout.StateWord(layout.StateInitializing, 777))
		h, err := layout.Check(b, uint64(len(b)))
		checkErr(t, err, layout.ErrNotReady)
		if h == nil || h.State != layout.StateInitializing || h.StatePID != 777 {
			t.Fatalf("header %+v, want initializing by 777", h)
		}
	})
	for _, st := range []layout.State{layout.StateEmpty, layout.StateInitializing} {
		t.Run("half written/"+st.String(), func(t *testing.T) {
			b := image(t, fullSpec(), st)
			ne.PutUint64(b[layout.OffState:], layout.StateWord(st, 99))
			ne.PutUint64(b[layout.OffInitGen:], 3)
			ne.PutUint64(b[layout.OffChecksum:], 0) // not written yet
			b[700] ^= 0xff                          // the immutable part is not trusted
			h, err := layout.Check(b, uint64(len(b)))
			ce := checkErr(t, err, layout.ErrNotReady)
			if h == nil || h.State != st || h.StatePID != 99 || h.InitGen != 3 {
				t.Fatalf("header %+v", h)
			}
			if !strings.Contains(ce.Detail, st.String()) || !strings.Contains(ce.Detail, "99") {
				t.Errorf("detail %q does not name the state and pid", ce.Detail)
			}
		})
	}
}

func TestCheckTruncated(t *testing.T) {
	full := image(t, fullSpec(), layout.StateReady)
	total := uint64(len(full))
	cases := []struct {
		name   string
		b      []byte
		segLen uint64
	}{
		{"nil", nil, 0},
		{"15 bytes", full[:15], 15},
		{"segLen 8", full, 8},
		{"magic only", full[:16], 16},
		{"short buffer", full[:layout.HeaderSize-1], total},
		{"short segment", full, layout.HeaderSize - 1},
		{"segLen below total size", full, total - 1},
		{"segLen is header", full[:layout.HeaderSize], layout.HeaderSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := layout.Check(tc.b, tc.segLen)
			checkErr(t, err, layout.ErrTruncated)
			if h != nil {
				t.Errorf("header returned: %+v", h)
			}
		})
	}
}

func TestCheckChecksum(t *testing.T) {
	for _, off := range []int{layout.MutableEnd, layout.OffKind, layout.OffCreated + 3, layout.OffFields + 5, layout.OffSections + 20, 900, layout.HeaderSize - 1} {
		b := image(t, fullSpec(), layout.StateReady)
		b[off] ^= 0x10
		_, err := layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrChecksum)
		if !strings.Contains(ce.Detail, "torn") {
			t.Errorf("flip at %d: detail %q", off, ce.Detail)
		}
	}
	b := image(t, fullSpec(), layout.StateReady)
	ne.PutUint64(b[layout.OffChecksum:], ne.Uint64(b[layout.OffChecksum:])+1)
	_, err := layout.Check(b, uint64(len(b)))
	checkErr(t, err, layout.ErrChecksum)

	// The mutable part is outside the checksum.
	b = image(t, fullSpec(), layout.StateReady)
	ne.PutUint64(b[layout.OffInitGen:], 42)
	b[layout.OffInitializer+3] = 9
	b[layout.OffReservedMutable-1] = 1 // the initializer's last byte
	if _, err := layout.Check(b, uint64(len(b))); err != nil {
		t.Errorf("edit of the mutable part: %v", err)
	}
}

func TestCheckVersion(t *testing.T) {
	for _, major := range []uint16{0, layout.Major + 1, 0xffff} {
		b := image(t, fullSpec(), layout.StateReady)
		ne.PutUint16(b[layout.OffMajor:], major)
		// Without a new checksum the edit is a checksum error...
		_, err := layout.Check(b, uint64(len(b)))
		checkErr(t, err, layout.ErrChecksum)
		// ...and with one, a version error naming both versions.
		reseal(b)
		_, err = layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrVersion)
		if !strings.Contains(ce.Detail, "format ") || !strings.Contains(ce.Detail, "major 1") {
			t.Errorf("major %d: detail %q", major, ce.Detail)
		}
	}
}

// TestCheckNewerMinor is the compatibility rule: the same major with a
// higher minor is accepted (a minor only adds what older code may ignore),
// including a state that minor added; MinMinor lets a process demand one.
func TestCheckNewerMinor(t *testing.T) {
	b := image(t, fullSpec(), layout.StateReady)
	ne.PutUint16(b[layout.OffMinor:], layout.Minor+7)
	reseal(b)
	h, err := layout.Check(b, uint64(len(b)))
	if err != nil {
		t.Fatalf("newer minor refused: %v", err)
	}
	if h.Major != layout.Major || h.Minor != layout.Minor+7 {
		t.Fatalf("version %d.%d", h.Major, h.Minor)
	}
	if err := h.Match(fullSpec()); err != nil {
		t.Errorf("Match: %v", err)
	}
	spec := fullSpec()
	spec.MinMinor = layout.Minor + 7
	if err := h.Match(spec); err != nil {
		t.Errorf("Match with MinMinor = its minor: %v", err)
	}

	// A state byte of a newer minor.
	ne.PutUint64(b[layout.OffState:], layout.StateWord(9, 1))
	h, err = layout.Check(b, uint64(len(b)))
	if err != nil {
		t.Fatalf("newer minor's state refused: %v", err)
	}
	if h.State != 9 {
		t.Errorf("state %v", h.State)
	}
	// The same unknown state in a header of our minor is corrupt.
	ne.PutUint16(b[layout.OffMinor:], layout.Minor)
	reseal(b)
	_, err = layout.Check(b, uint64(len(b)))
	checkErr(t, err, layout.ErrCorrupt)
}

func TestCheckByteOrder(t *testing.T) {
	t.Run("swapped magic", func(t *testing.T) {
		b := image(t, fullSpec(), layout.StateReady)
		var m [8]byte
		ne.PutUint64(m[:], layout.Magic)
		for i := range 4 {
			m[i], m[7-i] = m[7-i], m[i]
		}
		copy(b[layout.OffMagic:], m[:])
		_, err := layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrByteOrder)
		if !strings.Contains(ce.Detail, "byte order") {
			t.Errorf("detail %q", ce.Detail)
		}
	})
	t.Run("swapped mark", func(t *testing.T) {
		b := image(t, fullSpec(), layout.StateReady)
		ne.PutUint32(b[layout.OffByteOrder:], 0x04030201)
		reseal(b)
		_, err := layout.Check(b, uint64(len(b)))
		checkErr(t, err, layout.ErrByteOrder)
	})
}

func TestCheckPlatform(t *testing.T) {
	for _, ws := range []uint8{4, 0, 16} {
		b := image(t, fullSpec(), layout.StateReady)
		b[layout.OffWordSize] = ws
		reseal(b)
		_, err := layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrPlatform)
		if !strings.Contains(ce.Detail, "word size") {
			t.Errorf("detail %q", ce.Detail)
		}
	}
}

// TestCheckReserved: a non-zero byte at either end of each reserved range
// is corrupt in a header of this minor and ignored in a newer minor's; the
// bytes next to each range are not reserved (a control: the check names
// the ranges, not the whole header).
func TestCheckReserved(t *testing.T) {
	spec := fullSpec() // 2 fields, 4 sections: slots 2..11 and 4..15 unused
	ranges := []struct {
		name     string
		from, to int
		what     string
	}{
		{"mutable", layout.OffReservedMutable, layout.MutableEnd, "reserved mutable word"},
		{"pad after word size", layout.OffPadWordSize, layout.OffPadWordSize + 3, "pad after the word size"},
		{"pad after counts", layout.OffPadCounts, layout.OffPadCounts + 8, "pad after the section count"},
		{"field slots", fieldOff(len(spec.Fields)), layout.OffSections, "unused config field slot"},
		{"section slots", sectionOff(len(spec.Sections)), layout.OffReservedTail, "unused section slot"},
		{"tail", layout.OffReservedTail, layout.HeaderSize, "reserved tail"},
	}
	for _, r := range ranges {
		for _, off := range []int{r.from, r.to - 1} {
			t.Run(fmt.Sprintf("%s/%d", r.name, off), func(t *testing.T) {
				b := image(t, spec, layout.StateReady)
				b[off] = 0x5a
				reseal(b)
				h, err := layout.Check(b, uint64(len(b)))
				ce := checkErr(t, err, layout.ErrCorrupt)
				if h != nil {
					t.Errorf("header returned: %+v", h)
				}
				if want := fmt.Sprintf("reserved byte %d (%s) is 0x5a", off, r.what); !strings.Contains(ce.Detail, want) {
					t.Errorf("detail %q, want it to contain %q", ce.Detail, want)
				}
				// A newer minor may use the byte.
				ne.PutUint16(b[layout.OffMinor:], layout.Minor+1)
				reseal(b)
				if _, err := layout.Check(b, uint64(len(b))); err != nil {
					t.Errorf("newer minor with byte %d set: %v", off, err)
				}
			})
		}
	}
	// Control: the bytes just outside the ranges belong to fields, and a
	// change there is not reported as a reserved byte.
	for _, off := range []int{layout.OffReservedMutable - 1, layout.OffWordSize, layout.OffPageSize, layout.OffPadCounts - 1,
		layout.OffTotalSize, fieldOff(len(spec.Fields)) - 1, sectionOff(len(spec.Sections)) - 1} {
		b := image(t, spec, layout.StateReady)
		b[off] ^= 0x01
		reseal(b)
		if _, err := layout.Check(b, uint64(len(b))); err != nil && strings.Contains(err.Error(), "reserved") {
			t.Errorf("byte %d next to a reserved range reported as reserved: %v", off, err)
		}
	}
	// With every slot in use there are no slot bytes left to check.
	full := layout.Spec{Kind: layout.KindLease}
	for i := range layout.MaxFields {
		full.Fields = append(full.Fields, layout.Field{Name: fmt.Sprintf("f%d", i), Value: ^uint64(0)})
	}
	for i := range layout.MaxSections {
		full.Sections = append(full.Sections, layout.SectionSpec{Name: fmt.Sprintf("s%d", i), Size: 1})
	}
	b := image(t, full, layout.StateReady)
	if _, err := layout.Check(b, uint64(len(b))); err != nil {
		t.Errorf("header with every slot used: %v", err)
	}
}

// TestCheckPageSize: the page size must be this machine's; another valid
// page size is a platform difference, anything else corruption.
func TestCheckPageSize(t *testing.T) {
	mine := uint32(os.Getpagesize())
	b := image(t, fullSpec(), layout.StateReady)
	h, err := layout.Check(b, uint64(len(b)))
	if err != nil || h.PageSize != mine {
		t.Fatalf("own page size: %+v, %v", h, err)
	}
	other := uint32(64 << 10)
	if mine == other {
		other = 4 << 10
	}
	for _, ps := range []uint32{other, layout.MinPageSize, layout.MaxPageSize} {
		if ps == mine {
			continue
		}
		b := image(t, fullSpec(), layout.StateReady)
		ne.PutUint32(b[layout.OffPageSize:], ps)
		reseal(b)
		_, err := layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrPlatform)
		if want := fmt.Sprintf("page size %d, this machine has %d", ps, mine); !strings.Contains(ce.Detail, want) {
			t.Errorf("detail %q, want %q", ce.Detail, want)
		}
	}
	for _, ps := range []uint32{0, 1, 512, layout.MinPageSize / 2, layout.MinPageSize + 1, 3 * 4096, layout.MaxPageSize * 2, 1 << 31, ^uint32(0)} {
		b := image(t, fullSpec(), layout.StateReady)
		ne.PutUint32(b[layout.OffPageSize:], ps)
		reseal(b)
		_, err := layout.Check(b, uint64(len(b)))
		ce := checkErr(t, err, layout.ErrCorrupt)
		if !strings.Contains(ce.Detail, fmt.Sprintf("page size %d is not a power of two", ps)) {
			t.Errorf("page size %d: detail %q", ps, ce.Detail)
		}
	}
}

func TestCheckCorrupt(t *testing.T) {
	spec := fullSpec() // sections nodes@1024+100, parts@1152+4096, empty@5248+0, tail@5248+8
	cases := []struct {
		name   string
		edit   func(b []byte)
		detail string
	}{
		{"unknown state", func(b []byte) { ne.PutUint64(b[layout.OffState:], layout.StateWord(5, 1)) }, "not a known state"},
		{"state 255", func(b []byte) { ne.PutUint64(b[layout.OffState:], layout.StateWord(255, 1)) }, "not a known state"},
		{"too many fields", func(b []byte) { ne.PutUint16(b[layout.OffNumFields:], layout.MaxFields+1) }, "config fields"},
		{"nfields 0xffff", func(b []byte) { ne.PutUint16(b[layout.OffNumFields:], 0xffff) }, "config fields"},
		{"too many sections", func(b []byte) { ne.PutUint16(b[layout.OffNumSections:], layout.MaxSections+1) }, "sections"},
		{"total size below header", func(b []byte) { ne.PutUint64(b[layout.OffTotalSize:], layout.HeaderSize-1) }, "smaller than the header"},
		{"total size zero", func(b []byte) { ne.PutUint64(b[layout.OffTotalSize:], 0) }, "smaller than the header"},
		{"section misaligned", func(b []byte) { ne.PutUint64(b[sectionOff(1)+layout.NameLen:], 1152+8) }, "aligned"},
		{"section overlaps previous", func(b []byte) { ne.PutUint64(b[sectionOff(1)+layout.NameLen:], 1024) }, "overlaps"},
		{"section overlaps header", func(b []byte) { ne.PutUint64(b[sectionOff(0)+layout.NameLen:], 512) }, "overlaps"},
		{"section at zero", func(b []byte) { ne.PutUint64(b[sectionOff(0)+layout.NameLen:], 0) }, "overlaps"},
		{"section past end", func(b []byte) { ne.PutUint64(b[sectionOff(3)+layout.NameLen+8:], 4096) }, "past the segment end"},
		{"section offset past end", func(b []byte) { ne.PutUint64(b[sectionOff(3)+layout.NameLen:], 1<<40) }, "past the segment end"},
		{"section offset+size overflows", func(b []byte) {
			ne.PutUint64(b[sectionOff(3)+layout.NameLen:], 1<<63)
			ne.PutUint64(b[sectionOff(3)+layout.NameLen+8:], 1<<63)
		}, "past the segment end"},
		{"section size max", func(b []byte) { ne.PutUint64(b[sectionOff(3)+layout.NameLen+8:], ^uint64(0)) }, "past the segment end"},
		{"field name empty", func(b []byte) { putName(b, fieldOff(1), "") }, "config field 1"},
		{"field name control byte", func(b []byte) { putName(b, fieldOff(0), "max\x01nodes") }, "printable"},
		{"field name space", func(b []byte) { putName(b, fieldOff(0), "max nodes") }, "printable"},
		{"field name high byte", func(b []byte) { putName(b, fieldOff(0), "m\xffx") }, "printable"},
		{"field name not NUL padded", func(b []byte) { putName(b, fieldOff(0), "max\x00nodes") }, "NUL padded"},
		{"field name duplicate", func(b []byte) { putName(b, fieldOff(1), "max_nodes") }, "twice"},
		{"section name empty", func(b []byte) { putName(b, sectionOff(2), "") }, "section 2"},
		{"section name bad", func(b []byte) { putName(b, sectionOff(2), "a\tb") }, "printable"},
		{"section name not NUL padded", func(b []byte) { b[sectionOff(2)+layout.NameLen-1] = 'x' }, "NUL padded"},
		{"section name duplicate", func(b []byte) { putName(b, sectionOff(3), "nodes") }, "twice"},
		{"extra section slot counted", func(b []byte) { ne.PutUint16(b[layout.OffNumSections:], 5) }, "section 4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := image(t, spec, layout.StateReady)
			tc.edit(b)
			reseal(b)
			h, err := layout.Check(b, uint64(len(b)))
			ce := checkErr(t, err, layout.ErrCorrupt)
			if h != nil {
				t.Errorf("header returned: %+v", h)
			}
			if !strings.Contains(ce.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", ce.Detail, tc.detail)
			}
		})
	}
	// A header whose total size exceeds the segment is truncated, not corrupt.
	b := image(t, spec, layout.StateReady)
	ne.PutUint64(b[layout.OffTotalSize:], uint64(len(b))+64)
	reseal(b)
	_, err := layout.Check(b, uint64(len(b)))
	checkErr(t, err, layout.ErrTruncated)
}

// TestCheckErrorKindsDistinct: every kind is its own sentinel, and a
// CheckError matches only its own.
func TestCheckErrorKindsDistinct(t *testing.T) {
	kinds := []error{layout.ErrNotOurs, layout.ErrNotReady, layout.ErrTruncated, layout.ErrChecksum, layout.ErrVersion,
		layout.ErrByteOrder, layout.ErrPlatform, layout.ErrCorrupt, layout.ErrMismatch, layout.ErrSpec}
	for i, k := range kinds {
		err := error(&layout.CheckError{Kind: k, Detail: "d"})
		for j, o := range kinds {
			if errors.Is(err, o) != (i == j) {
				t.Errorf("CheckError{%v} Is %v = %v", k, o, i != j)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	b := image(t, fullSpec(), layout.StateReady)
	h, err := layout.Check(b, uint64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		field              string
		have, wnt          uint64
		haveText, wantText string
	}
	cases := []struct {
		name string
		edit func(s *layout.Spec)
		want want
	}{
		{"kind", func(s *layout.Spec) { s.Kind = layout.KindIndex }, want{field: "kind", haveText: "cluster", wantText: "index"}},
		{"unknown kind", func(s *layout.Spec) { s.Kind = 99 }, want{field: "kind", haveText: "cluster", wantText: "kind(99)"}},
		{"value", func(s *layout.Spec) { s.Fields[0].Value = 32 }, want{field: "max_nodes", have: 16, wnt: 32}},
		{"missing field", func(s *layout.Spec) {
			s.Fields = append(s.Fields, layout.Field{Name: "replicas", Value: 2})
		}, want{field: "replicas", haveText: "absent", wantText: "2"}},
		{"extra field", func(s *layout.Spec) { s.Fields = s.Fields[:1] }, want{field: "partitions", haveText: "4096", wantText: "absent"}},
		{"section missing", func(s *layout.Spec) {
			s.Sections = append(s.Sections, layout.SectionSpec{Name: "more", Size: 8})
		}, want{field: "section more", haveText: "absent", wantText: "8 bytes"}},
		{"section smaller", func(s *layout.Spec) { s.Sections[1].Size = 4097 }, want{field: "section parts size", have: 4096, wnt: 4097}},
		{"min minor", func(s *layout.Spec) { s.MinMinor = layout.Minor + 1 }, want{field: "format_minor", have: layout.Minor, wnt: layout.Minor + 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := fullSpec()
			tc.edit(&spec)
			err := h.Match(spec)
			if !errors.Is(err, layout.ErrMismatch) {
				t.Fatalf("Match = %v, want ErrMismatch", err)
			}
			var me *layout.MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("%T is not *MismatchError", err)
			}
			got := want{me.Field, me.Have, me.Want, me.HaveText, me.WantText}
			if got != tc.want {
				t.Errorf("mismatch %+v, want %+v", got, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "the segment has "+tc.want.field+"=") {
				t.Errorf("message %q", err.Error())
			}
		})
	}
	// What may differ: a smaller section demand, fewer sections, and the
	// order of fields.
	spec := fullSpec()
	spec.Sections = []layout.SectionSpec{{Name: "parts", Size: 10}}
	spec.Fields[0], spec.Fields[1] = spec.Fields[1], spec.Fields[0]
	if err := h.Match(spec); err != nil {
		t.Errorf("compatible spec: %v", err)
	}
}

func TestMismatchErrorMessage(t *testing.T) {
	err := error(&layout.MismatchError{Segment: "SysV key 0x537e0120", Field: "max_nodes", Have: 16, Want: 32, Remedy: "ipcrm -M 0x537e0120"})
	want := "SysV key 0x537e0120 has max_nodes=16, this process asks for 32: stop every process using it and remove it (ipcrm -M 0x537e0120), or use a new key for a rolling upgrade"
	if err.Error() != want {
		t.Errorf("message\n got %q\nwant %q", err.Error(), want)
	}
	if !errors.Is(err, layout.ErrMismatch) {
		t.Error("not ErrMismatch")
	}
	err = &layout.MismatchError{Field: "kind", HaveText: "pool", WantText: "lease"}
	if got := err.Error(); got != "the segment has kind=pool, this process asks for lease: remove the segment after stopping its users, or use a new key for a rolling upgrade" {
		t.Errorf("message without segment: %q", got)
	}
}

func TestPlan(t *testing.T) {
	p, err := fullSpec().Plan()
	if err != nil {
		t.Fatal(err)
	}
	want := []layout.Section{
		{Name: "nodes", Offset: 1024, Size: 100},
		{Name: "parts", Offset: 1152, Size: 4096},
		{Name: "empty", Offset: 5248, Size: 0},
		{Name: "tail", Offset: 5248, Size: 8},
	}
	if len(p.Sections) != len(want) {
		t.Fatalf("sections %v", p.Sections)
	}
	for i := range want {
		if p.Sections[i] != want[i] {
			t.Errorf("section %d = %+v, want %+v", i, p.Sections[i], want[i])
		}
		if p.Sections[i].Offset%layout.SectionAlign != 0 {
			t.Errorf("section %d misaligned", i)
		}
	}
	if p.TotalSize != 5312 {
		t.Errorf("total %d, want 5312", p.TotalSize)
	}
	if p.TotalSize%layout.SectionAlign != 0 {
		t.Error("total size not aligned")
	}

	empty, err := layout.Spec{Kind: layout.KindTest}.Plan()
	if err != nil || empty.TotalSize != layout.HeaderSize || len(empty.Sections) != 0 {
		t.Errorf("empty spec: %+v, %v", empty, err)
	}
	one, err := layout.Spec{Sections: []layout.SectionSpec{{Name: "a", Size: 1}, {Name: "b", Size: 64}, {Name: "c", Size: 65}}}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if one.Sections[1].Offset != 1088 || one.Sections[2].Offset != 1152 || one.TotalSize != 1152+128 {
		t.Errorf("plan %+v", one)
	}
	if _, err := (layout.Spec{Sections: []layout.SectionSpec{{Name: "big", Size: 1 << 40}}}).Plan(); err != nil {
		t.Errorf("1 TiB section: %v", err)
	}
}

func TestPlanErrors(t *testing.T) {
	many := func(n int, prefix string) []layout.Field {
		var fs []layout.Field
		for i := range n {
			fs = append(fs, layout.Field{Name: prefix + string(rune('a'+i)), Value: 1})
		}
		return fs
	}
	manySec := func(n int) []layout.SectionSpec {
		var ss []layout.SectionSpec
		for i := range n {
			ss = append(ss, layout.SectionSpec{Name: "s" + string(rune('a'+i)), Size: 1})
		}
		return ss
	}
	cases := map[string]layout.Spec{
		"too many fields":        {Fields: many(layout.MaxFields+1, "f")},
		"too many sections":      {Sections: manySec(layout.MaxSections + 1)},
		"duplicate field":        {Fields: []layout.Field{{Name: "a", Value: 1}, {Name: "a", Value: 2}}},
		"duplicate section":      {Sections: []layout.SectionSpec{{Name: "a", Size: 1}, {Name: "a", Size: 2}}},
		"empty field name":       {Fields: []layout.Field{{Name: "", Value: 1}}},
		"long field name":        {Fields: []layout.Field{{Name: "0123456789abcdefg", Value: 1}}},
		"field name with space":  {Fields: []layout.Field{{Name: "a b", Value: 1}}},
		"field name with NUL":    {Fields: []layout.Field{{Name: "a\x00", Value: 1}}},
		"field name non-ASCII":   {Fields: []layout.Field{{Name: "größe", Value: 1}}},
		"empty section name":     {Sections: []layout.SectionSpec{{Name: "", Size: 1}}},
		"section name with tab":  {Sections: []layout.SectionSpec{{Name: "a\tb", Size: 1}}},
		"section name DEL":       {Sections: []layout.SectionSpec{{Name: "a\x7f", Size: 1}}},
		"section larger than 1T": {Sections: []layout.SectionSpec{{Name: "a", Size: 1<<40 + 1}}},
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := spec.Plan()
			if !errors.Is(err, layout.ErrSpec) {
				t.Fatalf("Plan = %+v, %v; want ErrSpec", p, err)
			}
			if !strings.HasPrefix(err.Error(), "layout: ") {
				t.Errorf("message %q", err)
			}
		})
	}
	// Limits themselves, 16-byte names, and a field and a section sharing
	// a name are fine.
	ok := layout.Spec{Fields: many(layout.MaxFields, "f"), Sections: manySec(layout.MaxSections)}
	ok.Fields[0].Name = "0123456789abcdef"
	ok.Sections[0].Name = ok.Fields[0].Name
	if _, err := ok.Plan(); err != nil {
		t.Errorf("spec at the limits: %v", err)
	}
}

func TestStateAndKindStrings(t *testing.T) {
	for st, want := range map[layout.State]string{layout.StateEmpty: "empty", layout.StateInitializing: "initializing",
		layout.StateReady: "ready", layout.StateClean: "clean-shutdown", layout.StateRetired: "retired", 17: "state(17)"} {
		if st.String() != want {
			t.Errorf("State(%d) = %q, want %q", st, st.String(), want)
		}
	}
	for k, want := range map[layout.Kind]string{layout.KindTest: "test", layout.KindCluster: "cluster", layout.KindIndex: "index",
		layout.KindPoolStage: "pool-stage", layout.KindPool: "pool", layout.KindLease: "lease", 0: "kind(0)"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", k, k.String(), want)
		}
	}
	for _, tc := range []struct {
		st  layout.State
		pid uint32
	}{{layout.StateInitializing, 1}, {layout.StateReady, 0xffffffff}, {layout.StateEmpty, 0}, {255, 12345}} {
		w := layout.StateWord(tc.st, tc.pid)
		st, pid := layout.SplitStateWord(w)
		if st != tc.st || pid != tc.pid {
			t.Errorf("StateWord(%v,%d) round trip = %v,%d", tc.st, tc.pid, st, pid)
		}
	}
}

func TestMagicBytes(t *testing.T) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], layout.Magic)
	if string(b[:]) != "shmkit\x00\x01" {
		t.Errorf("magic bytes %q", b)
	}
}
