package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MaxDepth bounds the nesting of lists and maps the decoders accept (and
// the encoder produces).
const MaxDepth = 64

// BlobKey is a blob used as a map key: []byte cannot be one, so decoded
// maps hold blob keys as BlobKey, and AppendMsgpack encodes a BlobKey as a
// blob.
type BlobKey string

// MessagePack format bytes used by Aerospike's list and map encoding.
const (
	mpNil       = 0xc0
	mpFalse     = 0xc2
	mpTrue      = 0xc3
	mpBin8      = 0xc4
	mpBin16     = 0xc5
	mpBin32     = 0xc6
	mpExt8      = 0xc7
	mpExt16     = 0xc8
	mpExt32     = 0xc9
	mpFloat32   = 0xca
	mpFloat64   = 0xcb
	mpUint8     = 0xcc
	mpUint16    = 0xcd
	mpUint32    = 0xce
	mpUint64    = 0xcf
	mpInt8      = 0xd0
	mpInt16     = 0xd1
	mpInt32     = 0xd2
	mpInt64     = 0xd3
	mpFixExt1   = 0xd4
	mpFixExt16  = 0xd8
	mpStr8      = 0xd9
	mpStr16     = 0xda
	mpStr32     = 0xdb
	mpArray16   = 0xdc
	mpArray32   = 0xdd
	mpMap16     = 0xde
	mpMap32     = 0xdf
	mpFixMap    = 0x80
	mpFixArray  = 0x90
	mpFixStr    = 0xa0
	mpNegFixInt = 0xe0
)

// AppendMsgpack appends x in Aerospike's MessagePack dialect to dst:
// integers in their shortest form, floats as float64, strings and blobs as
// MessagePack strings whose first byte is the particle type (3 or 4),
// lists as arrays and maps as maps (in Go's map iteration order). x may be
// anything ValueOf accepts.
func AppendMsgpack(dst []byte, x any) ([]byte, error) {
	return appendMsgpack(dst, x, 0)
}

func appendMsgpack(dst []byte, x any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, fmt.Errorf("%w: lists and maps nested deeper than %d", ErrInvalid, MaxDepth)
	}
	switch v := x.(type) {
	case nil:
		return append(dst, mpNil), nil
	case bool:
		if v {
			return append(dst, mpTrue), nil
		}
		return append(dst, mpFalse), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, mpFloat64), math.Float64bits(v)), nil
	case float32:
		return binary.BigEndian.AppendUint64(append(dst, mpFloat64), math.Float64bits(float64(v))), nil
	case string:
		return appendParticleStr(dst, ParticleString, v), nil
	case []byte:
		return appendParticleStr(dst, ParticleBlob, string(v)), nil
	case BlobKey:
		return appendParticleStr(dst, ParticleBlob, string(v)), nil
	case uint64:
		if v > math.MaxInt64 {
			return binary.BigEndian.AppendUint64(append(dst, mpUint64), v), nil
		}
		return appendMsgpackInt(dst, int64(v)), nil
	case uint:
		return appendMsgpack(dst, uint64(v), depth)
	case Value:
		return appendValueMsgpack(dst, v, depth)
	case []any:
		dst = appendCount(dst, mpFixArray, mpArray16, len(v))
		var err error
		for _, e := range v {
			if dst, err = appendMsgpack(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case []string:
		dst = appendCount(dst, mpFixArray, mpArray16, len(v))
		for _, e := range v {
			dst = appendParticleStr(dst, ParticleString, e)
		}
		return dst, nil
	case []int:
		dst = appendCount(dst, mpFixArray, mpArray16, len(v))
		for _, e := range v {
			dst = appendMsgpackInt(dst, int64(e))
		}
		return dst, nil
	case []int64:
		dst = appendCount(dst, mpFixArray, mpArray16, len(v))
		for _, e := range v {
			dst = appendMsgpackInt(dst, e)
		}
		return dst, nil
	case []float64:
		dst = appendCount(dst, mpFixArray, mpArray16, len(v))
		for _, e := range v {
			dst = binary.BigEndian.AppendUint64(append(dst, mpFloat64), math.Float64bits(e))
		}
		return dst, nil
	case map[any]any:
		dst = appendCount(dst, mpFixMap, mpMap16, len(v))
		var err error
		for k, e := range v {
			if dst, err = appendMsgpack(dst, k, depth+1); err != nil {
				return dst, err
			}
			if dst, err = appendMsgpack(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case map[string]any:
		dst = appendCount(dst, mpFixMap, mpMap16, len(v))
		var err error
		for k, e := range v {
			dst = appendParticleStr(dst, ParticleString, k)
			if dst, err = appendMsgpack(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	if i, ok := asInt64(x); ok {
		return appendMsgpackInt(dst, i), nil
	}
	return dst, fmt.Errorf("%w: no MessagePack encoding for Go type %T", ErrInvalid, x)
}

// appendValueMsgpack appends a Value nested in a list or map.
func appendValueMsgpack(dst []byte, v Value, depth int) ([]byte, error) {
	switch v.typ {
	case ParticleList, ParticleMap:
		// Already MessagePack: nest it as it is.
		return append(dst, v.raw...), nil
	case ParticleNull, ParticleInteger, ParticleFloat, ParticleBool:
		x, err := v.Any()
		if err != nil {
			return dst, err
		}
		return appendMsgpack(dst, x, depth)
	case ParticleString:
		if v.inline {
			return appendParticleStr(dst, ParticleString, v.str), nil
		}
	}
	// Strings, blobs and the other byte particles keep their type byte.
	return appendParticleStr(dst, v.typ, string(v.raw)), nil
}

// appendCount appends an array or map header (fix form for n < 16).
func appendCount(dst []byte, fix, b16 byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, b16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, b16+1), uint32(n))
}

// appendParticleStr appends a MessagePack string holding the particle
// type byte followed by s.
func appendParticleStr(dst []byte, pt ParticleType, s string) []byte {
	n := len(s) + 1
	switch {
	case n < 32:
		dst = append(dst, mpFixStr|byte(n))
	case n < 256:
		dst = append(dst, mpStr8, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, mpStr16), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, mpStr32), uint32(n))
	}
	dst = append(dst, byte(pt))
	return append(dst, s...)
}

// appendMsgpackInt appends i in its shortest MessagePack form.
func appendMsgpackInt(dst []byte, i int64) []byte {
	switch {
	case i >= 0 && i < 128:
		return append(dst, byte(i))
	case i >= -32 && i < 0:
		return append(dst, byte(i))
	case i >= 0 && i <= math.MaxUint8:
		return append(dst, mpUint8, byte(i))
	case i >= 0 && i <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mpUint16), uint16(i))
	case i >= 0 && i <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mpUint32), uint32(i))
	case i >= math.MinInt8 && i < 0:
		return append(dst, mpInt8, byte(i))
	case i >= math.MinInt16 && i < 0:
		return binary.BigEndian.AppendUint16(append(dst, mpInt16), uint16(i))
	case i >= math.MinInt32 && i < 0:
		return binary.BigEndian.AppendUint32(append(dst, mpInt32), uint32(i))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpInt64), uint64(i))
}

// DecodeMsgpack decodes one MessagePack element in Aerospike's dialect from
// the start of b and returns it with its length. Elements decode as nil,
// bool, int64 (uint64 above math.MaxInt64), float64, string, []byte,
// []any and map[any]any (blob keys as BlobKey); extension elements, which
// the server puts first in ordered lists and maps to carry their flags,
// are skipped. Strings and blobs must carry their particle-type byte.
func DecodeMsgpack(b []byte) (any, int, error) {
	d := mpDecoder{b: b}
	x, err := d.decode(0, false)
	if err != nil {
		return nil, d.off, err
	}
	if _, ext := x.(extElement); ext {
		return nil, 0, decodeErr(ErrUnsupported, "element", 0, "an extension element outside a list or map")
	}
	return x, d.off, nil
}

// decodeWhole decodes b as exactly one element.
func decodeWhole(b []byte) (any, error) {
	x, n, err := DecodeMsgpack(b)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, decodeErr(ErrMalformed, "collection", n, "%d bytes after the element", len(b)-n)
	}
	return x, nil
}

type mpDecoder struct {
	b   []byte
	off int
}

// maxPrealloc bounds the elements a decoder allocates for before seeing
// them.
const maxPrealloc = 256

// extElement marks an extension element, which lists and maps leave out.
type extElement struct{}

func (d *mpDecoder) need(n int, what string) error {
	if n < 0 || n > len(d.b)-d.off {
		return decodeErr(ErrTruncated, what, d.off, "needs %d bytes, %d left", n, len(d.b)-d.off)
	}
	return nil
}

// uint reads an n-byte big-endian unsigned integer.
func (d *mpDecoder) uint(n int, what string) (uint64, error) {
	if err := d.need(n, what); err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range d.b[d.off : d.off+n] {
		v = v<<8 | uint64(c)
	}
	d.off += n
	return v, nil
}

func (d *mpDecoder) decode(depth int, mapKey bool) (any, error) {
	if depth > MaxDepth {
		return nil, decodeErr(ErrTooLarge, "collection", d.off, "nested deeper than %d", MaxDepth)
	}
	if err := d.need(1, "element"); err != nil {
		return nil, err
	}
	c := d.b[d.off]
	d.off++
	switch {
	case c < 0x80:
		return int64(c), nil
	case c >= mpNegFixInt:
		return int64(int8(c)), nil
	case c&0xf0 == mpFixMap:
		return d.decodeMap(int(c&0x0f), depth)
	case c&0xf0 == mpFixArray:
		return d.decodeList(int(c&0x0f), depth)
	case c&0xe0 == mpFixStr:
		return d.particleStr(int(c&0x1f), mapKey)
	}
	switch c {
	case mpNil:
		return nil, nil
	case mpFalse:
		return false, nil
	case mpTrue:
		return true, nil
	case mpFloat32:
		v, err := d.uint(4, "float32")
		return float64(math.Float32frombits(uint32(v))), err
	case mpFloat64:
		v, err := d.uint(8, "float64")
		return math.Float64frombits(v), err
	case mpUint8, mpUint16, mpUint32, mpUint64:
		v, err := d.uint(1<<(c-mpUint8), "unsigned integer")
		if err != nil {
			return nil, err
		}
		if v > math.MaxInt64 {
			return v, nil
		}
		return int64(v), nil
	case mpInt8:
		v, err := d.uint(1, "int8")
		return int64(int8(v)), err
	case mpInt16:
		v, err := d.uint(2, "int16")
		return int64(int16(v)), err
	case mpInt32:
		v, err := d.uint(4, "int32")
		return int64(int32(v)), err
	case mpInt64:
		v, err := d.uint(8, "int64")
		return int64(v), err
	case mpStr8, mpBin8, mpStr16, mpBin16, mpStr32, mpBin32:
		n, err := d.uint(strLenBytes(c), "string length")
		if err != nil {
			return nil, err
		}
		return d.particleStr(int(min(n, math.MaxInt32)), mapKey)
	case mpArray16, mpArray32:
		n, err := d.uint(2<<(c-mpArray16), "array length")
		if err != nil {
			return nil, err
		}
		return d.decodeList(int(min(n, math.MaxInt32)), depth)
	case mpMap16, mpMap32:
		n, err := d.uint(2<<(c-mpMap16), "map length")
		if err != nil {
			return nil, err
		}
		return d.decodeMap(int(min(n, math.MaxInt32)), depth)
	}
	if err := d.skipExt(c); err != nil {
		return nil, err
	}
	return extElement{}, nil
}

// strLenBytes is the size of the length of a str8/16/32 or bin8/16/32.
func strLenBytes(c byte) int {
	switch c {
	case mpStr8, mpBin8:
		return 1
	case mpStr16, mpBin16:
		return 2
	}
	return 4
}

// skipExt skips the extension element whose format byte c was read (an
// error for the format byte 0xc1, which MessagePack never uses).
func (d *mpDecoder) skipExt(c byte) error {
	var n int
	switch {
	case c >= mpFixExt1 && c <= mpFixExt16:
		n = 1 + 1<<(c-mpFixExt1)
	case c == mpExt8 || c == mpExt16 || c == mpExt32:
		l, err := d.uint(1<<(c-mpExt8), "extension length")
		if err != nil {
			return err
		}
		n = 1 + int(min(l, math.MaxInt32))
	default:
		return decodeErr(ErrMalformed, "element", d.off-1, "format byte 0x%02x is never used", c)
	}
	if err := d.need(n, "extension"); err != nil {
		return err
	}
	d.off += n
	return nil
}

// particleStr decodes a string or blob of n bytes: its particle type byte
// then its content.
func (d *mpDecoder) particleStr(n int, mapKey bool) (any, error) {
	if err := d.need(n, "string"); err != nil {
		return nil, err
	}
	if n == 0 {
		// Not produced by Aerospike (the particle byte is missing); the
		// empty string is the only sensible reading.
		return "", nil
	}
	pt := ParticleType(d.b[d.off])
	body := d.b[d.off+1 : d.off+n]
	d.off += n
	switch pt {
	case ParticleString, ParticleGeoJSON:
		return string(body), nil
	case ParticleBlob:
		if mapKey {
			return BlobKey(body), nil
		}
		return append([]byte(nil), body...), nil
	}
	return nil, decodeErr(ErrUnsupported, "string", d.off-n, "particle type %v inside a collection", pt)
}

func (d *mpDecoder) decodeList(n, depth int) (any, error) {
	// Every element takes at least one byte.
	if err := d.need(n, "list"); err != nil {
		return nil, err
	}
	// n is bounded by the bytes left, but nested lists could each claim
	// that much before failing: allocate for a bounded prefix and let
	// append grow with the elements actually present.
	out := make([]any, 0, min(n, maxPrealloc))
	for i := range n {
		x, err := d.decode(depth+1, false)
		if err != nil {
			return nil, err
		}
		if _, ext := x.(extElement); ext {
			if i != 0 {
				return nil, decodeErr(ErrMalformed, "list", d.off, "extension element at index %d (only the first may be one)", i)
			}
			continue
		}
		out = append(out, x)
	}
	return out, nil
}

func (d *mpDecoder) decodeMap(n, depth int) (any, error) {
	if err := d.need(2*n, "map"); err != nil {
		return nil, err
	}
	out := make(map[any]any, min(n, maxPrealloc))
	for i := range n {
		at := d.off
		k, err := d.decode(depth+1, true)
		if err != nil {
			return nil, err
		}
		v, err := d.decode(depth+1, false)
		if err != nil {
			return nil, err
		}
		if _, ext := k.(extElement); ext {
			if i != 0 {
				return nil, decodeErr(ErrMalformed, "map", at, "extension key at entry %d (only the first may be one)", i)
			}
			continue
		}
		switch kv := k.(type) {
		case float64:
			if math.IsNaN(kv) {
				return nil, decodeErr(ErrUnsupported, "map key", at, "NaN cannot be a Go map key")
			}
		case nil, bool, int64, uint64, string, BlobKey:
		default:
			return nil, decodeErr(ErrUnsupported, "map key", at, "key of type %T cannot be a Go map key", k)
		}
		if _, ext := v.(extElement); ext {
			return nil, decodeErr(ErrMalformed, "map", at, "extension element as a value")
		}
		out[k] = v
	}
	return out, nil
}

// skipMsgpack checks the element at b[off:] without building it and
// returns the offset after it.
func skipMsgpack(b []byte, off, depth int) (int, error) {
	d := mpDecoder{b: b, off: off}
	if err := d.skip(depth); err != nil {
		return d.off, err
	}
	return d.off, nil
}

func (d *mpDecoder) skip(depth int) error {
	if depth > MaxDepth {
		return decodeErr(ErrTooLarge, "collection", d.off, "nested deeper than %d", MaxDepth)
	}
	if err := d.need(1, "element"); err != nil {
		return err
	}
	c := d.b[d.off]
	d.off++
	var n uint64 // elements to skip
	var err error
	switch {
	case c < 0x80 || c >= mpNegFixInt || c == mpNil || c == mpFalse || c == mpTrue:
		return nil
	case c&0xf0 == mpFixMap:
		n = 2 * uint64(c&0x0f)
	case c&0xf0 == mpFixArray:
		n = uint64(c & 0x0f)
	case c&0xe0 == mpFixStr:
		return d.skipStr(int(c & 0x1f))
	case c == mpFloat32 || c == mpFloat64:
		return d.skipBytes(4<<(c-mpFloat32), "float")
	case c >= mpUint8 && c <= mpUint64:
		return d.skipBytes(1<<(c-mpUint8), "integer")
	case c >= mpInt8 && c <= mpInt64:
		return d.skipBytes(1<<(c-mpInt8), "integer")
	case c == mpStr8 || c == mpBin8 || c == mpStr16 || c == mpBin16 || c == mpStr32 || c == mpBin32:
		l, err := d.uint(strLenBytes(c), "string length")
		if err != nil {
			return err
		}
		return d.skipStr(int(min(l, math.MaxInt32)))
	case c == mpArray16 || c == mpArray32:
		n, err = d.uint(2<<(c-mpArray16), "array length")
	case c == mpMap16 || c == mpMap32:
		n, err = d.uint(2<<(c-mpMap16), "map length")
		n *= 2
	default:
		return d.skipExt(c)
	}
	if err != nil {
		return err
	}
	if n > uint64(len(d.b)-d.off) {
		return decodeErr(ErrTruncated, "collection", d.off, "%d elements cannot fit in %d bytes", n, len(d.b)-d.off)
	}
	for range n {
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func (d *mpDecoder) skipBytes(n int, what string) error {
	if err := d.need(n, what); err != nil {
		return err
	}
	d.off += n
	return nil
}

// skipStr skips a string or blob of n bytes, checking its particle type.
func (d *mpDecoder) skipStr(n int) error {
	if err := d.need(n, "string"); err != nil {
		return err
	}
	if n > 0 {
		switch ParticleType(d.b[d.off]) {
		case ParticleString, ParticleBlob, ParticleGeoJSON:
		default:
			return decodeErr(ErrUnsupported, "string", d.off, "particle type %v inside a collection", ParticleType(d.b[d.off]))
		}
	}
	d.off += n
	return nil
}
