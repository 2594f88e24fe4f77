package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// ParticleType is the type byte of a bin value.
type ParticleType uint8

// Particle types.
const (
	// ParticleNull is no value (reads, touch; a null bin write deletes the
	// bin).
	ParticleNull ParticleType = 0
	// ParticleInteger is a signed 64-bit integer, 8 big-endian bytes.
	ParticleInteger ParticleType = 1
	// ParticleFloat is an IEEE 754 double, 8 big-endian bytes.
	ParticleFloat ParticleType = 2
	// ParticleString is a UTF-8 string, its bytes.
	ParticleString ParticleType = 3
	// ParticleBlob is a byte string, its bytes.
	ParticleBlob ParticleType = 4
	// ParticleBool is a boolean, one byte (0 or 1).
	ParticleBool ParticleType = 17
	// ParticleHLL is a HyperLogLog, opaque bytes.
	ParticleHLL ParticleType = 18
	// ParticleMap is a map, MessagePack.
	ParticleMap ParticleType = 19
	// ParticleList is a list, MessagePack.
	ParticleList ParticleType = 20
	// ParticleGeoJSON is a GeoJSON value.
	ParticleGeoJSON ParticleType = 23
)

// String names the particle type.
func (p ParticleType) String() string {
	switch p {
	case ParticleNull:
		return "null"
	case ParticleInteger:
		return "integer"
	case ParticleFloat:
		return "float"
	case ParticleString:
		return "string"
	case ParticleBlob:
		return "blob"
	case ParticleBool:
		return "bool"
	case ParticleHLL:
		return "hll"
	case ParticleMap:
		return "map"
	case ParticleList:
		return "list"
	case ParticleGeoJSON:
		return "geojson"
	}
	return "particle " + strconv.Itoa(int(p))
}

// Value is a bin value: a particle type and its content. Integers, floats
// and booleans are held inline and strings as strings, so building them
// does not allocate; blobs, lists, maps and values decoded from the wire
// hold their encoded bytes (which decoded values share with the decoded
// body). The zero Value is the null value.
type Value struct {
	typ ParticleType
	num uint64 // integer, float bits or bool (held inline)
	str string // string built by StringValue
	raw []byte // encoded bytes of every other value
	// inline is true when num (integer, float, bool) or str (string)
	// holds the value rather than raw.
	inline bool
}

// NullValue returns the null Value.
func NullValue() Value { return Value{} }

// IntValue returns an integer Value.
func IntValue(i int64) Value { return Value{typ: ParticleInteger, num: uint64(i), inline: true} }

// FloatValue returns a float Value.
func FloatValue(f float64) Value {
	return Value{typ: ParticleFloat, num: math.Float64bits(f), inline: true}
}

// BoolValue returns a bool Value.
func BoolValue(b bool) Value {
	v := Value{typ: ParticleBool, inline: true}
	if b {
		v.num = 1
	}
	return v
}

// StringValue returns a string Value.
func StringValue(s string) Value { return Value{typ: ParticleString, str: s, inline: true} }

// BytesValue returns a blob Value holding b (not copied).
func BytesValue(b []byte) Value { return Value{typ: ParticleBlob, raw: b} }

// RawValue returns a Value of particle type t whose wire encoding is data
// (not copied), e.g. a value decoded elsewhere or stored by a server.
func RawValue(t ParticleType, data []byte) Value { return Value{typ: t, raw: data} }

// ListValue returns a list Value encoded from l (elements as accepted by
// ValueOf, nested lists and maps included).
func ListValue(l []any) (Value, error) {
	b, err := AppendMsgpack(nil, l)
	if err != nil {
		return Value{}, err
	}
	return Value{typ: ParticleList, raw: b}, nil
}

// MapValue returns a map Value encoded from m: a map[any]any or
// map[string]any (keys and values as accepted by ValueOf).
func MapValue(m any) (Value, error) {
	switch m.(type) {
	case map[any]any, map[string]any:
	default:
		return Value{}, fmt.Errorf("%w: MapValue of %T (want map[any]any or map[string]any)", ErrInvalid, m)
	}
	b, err := AppendMsgpack(nil, m)
	if err != nil {
		return Value{}, err
	}
	return Value{typ: ParticleMap, raw: b}, nil
}

// ValueOf converts a Go value to a Value: nil, bool, any integer type,
// float32/float64, string, []byte, a Value, []any (and []string, []int,
// []int64, []float64) as a list, map[any]any or map[string]any as a map.
func ValueOf(x any) (Value, error) {
	switch v := x.(type) {
	case nil:
		return NullValue(), nil
	case Value:
		return v, nil
	case bool:
		return BoolValue(v), nil
	case float64:
		return FloatValue(v), nil
	case float32:
		return FloatValue(float64(v)), nil
	case string:
		return StringValue(v), nil
	case []byte:
		return BytesValue(v), nil
	case BlobKey:
		return BytesValue([]byte(v)), nil
	case map[any]any, map[string]any:
		return MapValue(v)
	case []any, []string, []int, []int64, []float64:
		b, err := AppendMsgpack(nil, v)
		if err != nil {
			return Value{}, err
		}
		return Value{typ: ParticleList, raw: b}, nil
	}
	if i, ok := asInt64(x); ok {
		return IntValue(i), nil
	}
	return Value{}, fmt.Errorf("%w: no particle type for Go type %T", ErrInvalid, x)
}

// Type returns the particle type.
func (v Value) Type() ParticleType { return v.typ }

// EncodedLen returns the length of the value's wire encoding.
func (v Value) EncodedLen() int {
	if !v.inline {
		return len(v.raw)
	}
	switch v.typ {
	case ParticleString:
		return len(v.str)
	case ParticleBool:
		return 1
	}
	return 8
}

// AppendEncoded appends the value's wire encoding (without its particle
// type) to dst.
func (v Value) AppendEncoded(dst []byte) []byte {
	if !v.inline {
		return append(dst, v.raw...)
	}
	switch v.typ {
	case ParticleString:
		return append(dst, v.str...)
	case ParticleBool:
		return append(dst, byte(v.num))
	}
	return binary.BigEndian.AppendUint64(dst, v.num)
}

// Encoded returns the value's wire encoding: the held bytes for values
// built from bytes or decoded, a new slice otherwise.
func (v Value) Encoded() []byte {
	if !v.inline {
		return v.raw
	}
	return v.AppendEncoded(nil)
}

// typeErr reports a Value accessed as the wrong particle type.
func (v Value) typeErr(want ParticleType) error {
	return fmt.Errorf("%w: value is %v, not %v", ErrBinTypeMismatch, v.typ, want)
}

// fixed returns the 8-byte payload of an integer or float.
func (v Value) fixed(want ParticleType) (uint64, error) {
	if v.typ != want {
		return 0, v.typeErr(want)
	}
	if v.inline {
		return v.num, nil
	}
	if len(v.raw) != 8 {
		return 0, decodeErr(ErrMalformed, want.String()+" value", 0, "%d bytes, want 8", len(v.raw))
	}
	return beUint64(v.raw), nil
}

// AsInt returns an integer value. Other particle types give an error
// wrapping ErrBinTypeMismatch.
func (v Value) AsInt() (int64, error) {
	n, err := v.fixed(ParticleInteger)
	return int64(n), err
}

// AsFloat returns a float value.
func (v Value) AsFloat() (float64, error) {
	n, err := v.fixed(ParticleFloat)
	return math.Float64frombits(n), err
}

// AsBool returns a bool value.
func (v Value) AsBool() (bool, error) {
	if v.typ != ParticleBool {
		return false, v.typeErr(ParticleBool)
	}
	if v.inline {
		return v.num != 0, nil
	}
	if len(v.raw) != 1 {
		return false, decodeErr(ErrMalformed, "bool value", 0, "%d bytes, want 1", len(v.raw))
	}
	return v.raw[0] != 0, nil
}

// AsString returns a string value (a copy of decoded bytes).
func (v Value) AsString() (string, error) {
	if v.typ != ParticleString {
		return "", v.typeErr(ParticleString)
	}
	if v.inline {
		return v.str, nil
	}
	return string(v.raw), nil
}

// AsBytes returns a blob value's bytes (shared, not copied).
func (v Value) AsBytes() ([]byte, error) {
	if v.typ != ParticleBlob {
		return nil, v.typeErr(ParticleBlob)
	}
	return v.raw, nil
}

// AsList decodes a list value (see DecodeMsgpack for the Go types of the
// elements).
func (v Value) AsList() ([]any, error) {
	if v.typ != ParticleList {
		return nil, v.typeErr(ParticleList)
	}
	x, err := decodeWhole(v.raw)
	if err != nil {
		return nil, err
	}
	l, ok := x.([]any)
	if !ok {
		return nil, decodeErr(ErrMalformed, "list value", 0, "MessagePack %T, not an array", x)
	}
	return l, nil
}

// AsMap decodes a map value.
func (v Value) AsMap() (map[any]any, error) {
	if v.typ != ParticleMap {
		return nil, v.typeErr(ParticleMap)
	}
	x, err := decodeWhole(v.raw)
	if err != nil {
		return nil, err
	}
	m, ok := x.(map[any]any)
	if !ok {
		return nil, decodeErr(ErrMalformed, "map value", 0, "MessagePack %T, not a map", x)
	}
	return m, nil
}

// Any returns the value as a Go value: nil, int64, float64, string,
// []byte, bool, []any or map[any]any. Other particle types (HLL, GeoJSON,
// language blobs) give their bytes.
func (v Value) Any() (any, error) {
	switch v.typ {
	case ParticleNull:
		return nil, nil
	case ParticleInteger:
		return v.AsInt()
	case ParticleFloat:
		return v.AsFloat()
	case ParticleString:
		return v.AsString()
	case ParticleBool:
		return v.AsBool()
	case ParticleList:
		return v.AsList()
	case ParticleMap:
		return v.AsMap()
	}
	return v.Encoded(), nil
}

// check validates a decoded value's size (integers, floats, bools) and
// MessagePack structure (lists, maps) without allocating.
func (v Value) check() error {
	switch v.typ {
	case ParticleInteger, ParticleFloat:
		if len(v.raw) != 8 {
			return fmt.Errorf("%v of %d bytes, want 8", v.typ, len(v.raw))
		}
	case ParticleBool:
		if len(v.raw) != 1 {
			return fmt.Errorf("bool of %d bytes, want 1", len(v.raw))
		}
	case ParticleList, ParticleMap:
		end, err := skipMsgpack(v.raw, 0, 0)
		if err != nil {
			return err
		}
		if end != len(v.raw) {
			return fmt.Errorf("%d bytes after the %v", len(v.raw)-end, v.typ)
		}
	}
	return nil
}

// asInt64 converts any Go integer type to int64 (false for other types
// and for uint64 values above math.MaxInt64).
func asInt64(x any) (int64, bool) {
	switch v := x.(type) {
	case int:
		return int64(v), true
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint:
		return int64(v), uint64(v) <= math.MaxInt64
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(v), v <= math.MaxInt64
	}
	return 0, false
}
