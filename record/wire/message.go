package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/shmkit/shmkit/partmap"
)

// Sizes and limits of the message format.
const (
	// MsgHeaderSize is the size of the message header (byte 0 of every
	// body holds it).
	MsgHeaderSize = 22
	// FieldHeaderSize is the size of a field's size and type.
	FieldHeaderSize = 5
	// OpHeaderSize is the size of an operation's size, op type, particle
	// type, version and name length.
	OpHeaderSize = 8
	// MaxBinNameLen is the longest bin name a server accepts.
	MaxBinNameLen = 15
	// MaxNamespaceLen is the longest namespace name.
	MaxNamespaceLen = 31
	// MaxSetLen is the longest set name.
	MaxSetLen = 63
)

// Info1 holds the read bits of the message header (byte 1).
type Info1 uint8

// Info1 bits.
const (
	// Info1Read asks the server to read the record.
	Info1Read Info1 = 1 << 0
	// Info1GetAll asks for every bin (with Info1Read and no read ops).
	Info1GetAll Info1 = 1 << 1
	// Info1ShortQuery marks a short query.
	Info1ShortQuery Info1 = 1 << 2
	// Info1Batch marks a batch command.
	Info1Batch Info1 = 1 << 3
	// Info1XDR marks a write from cross-datacenter replication.
	Info1XDR Info1 = 1 << 4
	// Info1NoBinData asks for the record's metadata only (exists,
	// read header).
	Info1NoBinData Info1 = 1 << 5
	// Info1ReadModeAPAll asks for a read that consults every replica.
	Info1ReadModeAPAll Info1 = 1 << 6
	// Info1CompressResponse asks for a compressed reply (never set by this
	// package).
	Info1CompressResponse Info1 = 1 << 7
)

// Info2 holds the write bits of the message header (byte 2).
type Info2 uint8

// Info2 bits.
const (
	// Info2Write marks a command that writes.
	Info2Write Info2 = 1 << 0
	// Info2Delete deletes the record (with Info2Write).
	Info2Delete Info2 = 1 << 1
	// Info2Generation makes the write conditional on the record's
	// generation being equal to the header's.
	Info2Generation Info2 = 1 << 2
	// Info2GenerationGT makes the write conditional on the header's
	// generation being greater than the record's.
	Info2GenerationGT Info2 = 1 << 3
	// Info2DurableDelete leaves a tombstone on delete.
	Info2DurableDelete Info2 = 1 << 4
	// Info2CreateOnly fails the write if the record exists.
	Info2CreateOnly Info2 = 1 << 5
	// Info2RelaxAPLongQuery relaxes long queries in AP namespaces.
	Info2RelaxAPLongQuery Info2 = 1 << 6
	// Info2RespondAllOps asks for one result per operation.
	Info2RespondAllOps Info2 = 1 << 7
)

// Info3 holds the remaining bits of the message header (byte 3).
type Info3 uint8

// Info3 bits.
const (
	// Info3Last marks the last message of a multi-record reply.
	Info3Last Info3 = 1 << 0
	// Info3CommitMaster commits a write on the master only.
	Info3CommitMaster Info3 = 1 << 1
	// Info3PartitionDone marks a finished partition in scan replies.
	Info3PartitionDone Info3 = 1 << 2
	// Info3UpdateOnly fails the write if the record does not exist.
	Info3UpdateOnly Info3 = 1 << 3
	// Info3CreateOrReplace replaces every bin of the record, creating it
	// when missing.
	Info3CreateOrReplace Info3 = 1 << 4
	// Info3ReplaceOnly replaces every bin of the record and fails if it
	// does not exist.
	Info3ReplaceOnly Info3 = 1 << 5
	// Info3SCReadType selects the linearized strong-consistency read.
	Info3SCReadType Info3 = 1 << 6
	// Info3SCReadRelax relaxes strong-consistency reads.
	Info3SCReadRelax Info3 = 1 << 7
)

// FieldType is the type byte of a field.
type FieldType uint8

// Field types of single-record commands (others exist for batches,
// queries and UDFs; they decode as opaque fields).
const (
	// FieldNamespace holds the namespace name.
	FieldNamespace FieldType = 0
	// FieldSet holds the set name.
	FieldSet FieldType = 1
	// FieldKey holds the user key: particle type byte, then its bytes.
	FieldKey FieldType = 2
	// FieldRecordVersion holds a 7-byte record version (transactions).
	FieldRecordVersion FieldType = 3
	// FieldDigest holds the 20-byte RIPEMD-160 digest.
	FieldDigest FieldType = 4
	// FieldSocketTimeout holds a socket timeout (scans, queries).
	FieldSocketTimeout FieldType = 9
	// FieldFilterExp holds a filter expression.
	FieldFilterExp FieldType = 43
)

// OpType is the type byte of an operation.
type OpType uint8

// Operation types.
const (
	// OpRead reads the named bin (or, without a name, every bin).
	OpRead OpType = 1
	// OpWrite writes the bin.
	OpWrite OpType = 2
	// OpCDTRead is a list/map read operation.
	OpCDTRead OpType = 3
	// OpCDTModify is a list/map modify operation.
	OpCDTModify OpType = 4
	// OpAdd adds an integer (or float) to the bin.
	OpAdd OpType = 5
	// OpExpRead evaluates a read expression.
	OpExpRead OpType = 7
	// OpExpModify evaluates a write expression.
	OpExpModify OpType = 8
	// OpAppend appends to a string or blob bin.
	OpAppend OpType = 9
	// OpPrepend prepends to a string or blob bin.
	OpPrepend OpType = 10
	// OpTouch resets the record's TTL and bumps its generation.
	OpTouch OpType = 11
	// OpBitRead is a bitwise read operation.
	OpBitRead OpType = 12
	// OpBitModify is a bitwise modify operation.
	OpBitModify OpType = 13
	// OpDelete deletes the record within an operate command.
	OpDelete OpType = 14
	// OpHLLRead is a HyperLogLog read operation.
	OpHLLRead OpType = 15
	// OpHLLModify is a HyperLogLog modify operation.
	OpHLLModify OpType = 16
)

// Record TTL values of special meaning in requests.
const (
	// TTLNamespaceDefault (0) gives the record the namespace's default TTL.
	TTLNamespaceDefault uint32 = 0
	// TTLNeverExpire (-1) makes the record never expire.
	TTLNeverExpire uint32 = 0xFFFFFFFF
	// TTLDontUpdate (-2) keeps the record's TTL on update.
	TTLDontUpdate uint32 = 0xFFFFFFFE
)

// Header is the message header without the counts, which the encoder
// derives from the fields and operations.
type Header struct {
	// Info1, Info2, Info3 and Info4 are the attribute bytes 1-4.
	Info1 Info1
	Info2 Info2
	Info3 Info3
	Info4 uint8
	// ResultCode is the server's answer (replies only).
	ResultCode ResultCode
	// Generation is the expected generation in a generation-checked
	// write, the record's generation in a reply.
	Generation uint32
	// Expiration is the record TTL in seconds in a write (see the TTL*
	// constants), the read-touch TTL percent in a read, and the record's
	// void time (seconds since CitrusleafEpoch, 0 = never) in a reply.
	Expiration uint32
	// Timeout is the transaction TTL: the server-side timeout in
	// milliseconds (0 = none).
	Timeout uint32
}

// Field is one field of a message.
type Field struct {
	// Type is the field type.
	Type FieldType
	// Data is the field's content. Decoded fields alias the decoded body.
	Data []byte
}

// Op is one operation of a message: a bin to write, read or modify in a
// request, a bin value in a reply.
type Op struct {
	// Type is the operation type.
	Type OpType
	// Bin is the bin name (at most MaxBinNameLen bytes; empty for
	// operations on the whole record such as OpTouch).
	Bin string
	// Value is the operand (requests) or the bin value (replies); the null
	// Value for operations without one (OpRead, OpTouch).
	Value Value
}

// Message is a decoded record message, request or reply. Decode reuses
// the Fields and Ops slices; fields and values alias the decoded body, so
// a Message is valid while its body is.
type Message struct {
	Header
	// Fields are the message's fields in wire order.
	Fields []Field
	// Ops are the message's operations in wire order.
	Ops []Op
}

// Field returns the data of the first field of type t.
func (m *Message) Field(t FieldType) ([]byte, bool) {
	for _, f := range m.Fields {
		if f.Type == t {
			return f.Data, true
		}
	}
	return nil, false
}

// Key returns the record key the message's fields name: namespace, set,
// digest and, when the FieldKey field is present, the user key. It fails
// with ErrMalformed when the namespace or digest is missing or the digest
// is not 20 bytes.
func (m *Message) Key() (Key, error) {
	var k Key
	ns, ok := m.Field(FieldNamespace)
	if !ok {
		return k, decodeErr(ErrMalformed, "key", 0, "no namespace field")
	}
	k.Namespace = string(ns)
	if set, ok := m.Field(FieldSet); ok {
		k.Set = string(set)
	}
	d, ok := m.Field(FieldDigest)
	if !ok {
		return k, decodeErr(ErrMalformed, "key", 0, "no digest field")
	}
	dg, err := partmap.ParseDigest(d)
	if err != nil {
		return k, decodeErr(ErrMalformed, "digest field", 0, "%v", err)
	}
	k.Digest = dg
	if uk, ok := m.Field(FieldKey); ok {
		if len(uk) < 1 {
			return k, decodeErr(ErrMalformed, "key field", 0, "empty (no particle type)")
		}
		k.UserKey = RawValue(ParticleType(uk[0]), uk[1:])
	}
	return k, nil
}

// Append appends m as a complete message (protocol header included) to
// dst. It fails with ErrInvalid for a bin name over MaxBinNameLen or more
// than 65535 fields or operations.
func (m *Message) Append(dst []byte) ([]byte, error) {
	if len(m.Fields) > 0xFFFF || len(m.Ops) > 0xFFFF {
		return dst, fmt.Errorf("%w: %d fields and %d ops (at most 65535 each)", ErrInvalid, len(m.Fields), len(m.Ops))
	}
	start := len(dst)
	dst = appendHeaders(dst, &m.Header, len(m.Fields), len(m.Ops))
	for _, f := range m.Fields {
		dst = appendFieldHeader(dst, f.Type, len(f.Data))
		dst = append(dst, f.Data...)
	}
	var err error
	for i := range m.Ops {
		if dst, err = appendOp(dst, &m.Ops[i]); err != nil {
			return dst[:start], err
		}
	}
	return finish(dst, start)
}

// AppendCommand appends a request naming key k to dst, without building
// a Message: the header h, the namespace, set (when not empty) and digest
// fields, the user key field when sendKey is true and k has one, then ops.
// It is what a client sends for every single-record command.
func AppendCommand(dst []byte, h *Header, k *Key, sendKey bool, ops []Op) ([]byte, error) {
	if err := k.validate(); err != nil {
		return dst, err
	}
	if len(ops) > 0xFFFF {
		return dst, fmt.Errorf("%w: %d ops (at most 65535)", ErrInvalid, len(ops))
	}
	nf := 2
	if k.Set != "" {
		nf++
	}
	sendKey = sendKey && k.UserKey.Type() != ParticleNull
	if sendKey {
		nf++
	}
	start := len(dst)
	dst = appendHeaders(dst, h, nf, len(ops))
	dst = appendFieldHeader(dst, FieldNamespace, len(k.Namespace))
	dst = append(dst, k.Namespace...)
	if k.Set != "" {
		dst = appendFieldHeader(dst, FieldSet, len(k.Set))
		dst = append(dst, k.Set...)
	}
	dst = appendFieldHeader(dst, FieldDigest, partmap.DigestSize)
	dst = append(dst, k.Digest[:]...)
	if sendKey {
		dst = appendFieldHeader(dst, FieldKey, 1+k.UserKey.EncodedLen())
		dst = append(dst, byte(k.UserKey.Type()))
		dst = k.UserKey.AppendEncoded(dst)
	}
	var err error
	for i := range ops {
		if dst, err = appendOp(dst, &ops[i]); err != nil {
			return dst[:start], err
		}
	}
	return finish(dst, start)
}

// AppendReply appends a reply with header h (its ResultCode, Generation
// and Expiration as void time) and one operation per bin to dst.
func AppendReply(dst []byte, h *Header, bins []Op) ([]byte, error) {
	m := Message{Header: *h, Ops: bins}
	return m.Append(dst)
}

// appendHeaders appends a protocol header with a zero length (finish sets
// it) and the message header.
func appendHeaders(dst []byte, h *Header, fields, ops int) []byte {
	dst = append(dst, ProtoVersion, TypeMessage, 0, 0, 0, 0, 0, 0)
	dst = append(dst, MsgHeaderSize, byte(h.Info1), byte(h.Info2), byte(h.Info3), h.Info4, byte(h.ResultCode))
	dst = binary.BigEndian.AppendUint32(dst, h.Generation)
	dst = binary.BigEndian.AppendUint32(dst, h.Expiration)
	dst = binary.BigEndian.AppendUint32(dst, h.Timeout)
	dst = binary.BigEndian.AppendUint16(dst, uint16(fields))
	return binary.BigEndian.AppendUint16(dst, uint16(ops))
}

func appendFieldHeader(dst []byte, t FieldType, n int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(n+1))
	return append(dst, byte(t))
}

func appendOp(dst []byte, op *Op) ([]byte, error) {
	if len(op.Bin) > MaxBinNameLen {
		return dst, fmt.Errorf("%w: bin name %q is %d bytes (at most %d)", ErrInvalid, op.Bin, len(op.Bin), MaxBinNameLen)
	}
	vlen := op.Value.EncodedLen()
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(op.Bin)+vlen))
	dst = append(dst, byte(op.Type), byte(op.Value.Type()), 0, byte(len(op.Bin)))
	dst = append(dst, op.Bin...)
	return op.Value.AppendEncoded(dst), nil
}

// finish writes the body length of the message that starts at start.
func finish(dst []byte, start int) ([]byte, error) {
	n := len(dst) - start - ProtoHeaderSize
	if uint64(n) > MaxBodyLen {
		return dst[:start], fmt.Errorf("%w: body of %d bytes", ErrInvalid, n)
	}
	h := ProtoHeader{Version: ProtoVersion, Type: TypeMessage, Length: uint64(n)}.Encode()
	copy(dst[start:], h[:])
	return dst, nil
}

// Decode decodes a message body (what follows the protocol header, as
// ReadMessage returns it) into m, reusing m's slices. Fields and values
// alias body. Every length is checked; bytes after the last operation are
// an error.
func (m *Message) Decode(body []byte) error {
	m.Fields, m.Ops = m.Fields[:0], m.Ops[:0]
	if len(body) < MsgHeaderSize {
		return decodeErr(ErrTruncated, "message header", len(body), "%d bytes, want %d", len(body), MsgHeaderSize)
	}
	if body[0] != MsgHeaderSize {
		return decodeErr(ErrMalformed, "message header", 0, "header size %d, want %d", body[0], MsgHeaderSize)
	}
	m.Header = Header{
		Info1: Info1(body[1]), Info2: Info2(body[2]), Info3: Info3(body[3]), Info4: body[4],
		ResultCode: ResultCode(body[5]),
		Generation: binary.BigEndian.Uint32(body[6:]),
		Expiration: binary.BigEndian.Uint32(body[10:]),
		Timeout:    binary.BigEndian.Uint32(body[14:]),
	}
	nf := int(binary.BigEndian.Uint16(body[18:]))
	nops := int(binary.BigEndian.Uint16(body[20:]))
	off := MsgHeaderSize
	// Each field and op takes at least its header: refuse counts the body
	// cannot hold before allocating for them.
	if nf*FieldHeaderSize+nops*OpHeaderSize > len(body)-off {
		return decodeErr(ErrTruncated, "message header", 18, "%d fields and %d ops cannot fit in %d bytes", nf, nops, len(body)-off)
	}
	if cap(m.Fields) < nf {
		m.Fields = make([]Field, 0, nf)
	}
	for i := range nf {
		if len(body)-off < FieldHeaderSize {
			return decodeErr(ErrTruncated, fieldName(i), off, "field header needs %d bytes, %d left", FieldHeaderSize, len(body)-off)
		}
		size := binary.BigEndian.Uint32(body[off:])
		if size < 1 {
			return decodeErr(ErrMalformed, fieldName(i), off, "field size 0 (must count the type byte)")
		}
		if uint64(size)-1 > uint64(len(body)-off-FieldHeaderSize) {
			return decodeErr(ErrTruncated, fieldName(i), off, "field of %d bytes, %d left", size-1, len(body)-off-FieldHeaderSize)
		}
		t := FieldType(body[off+4])
		data := body[off+FieldHeaderSize : off+FieldHeaderSize+int(size)-1]
		m.Fields = append(m.Fields, Field{Type: t, Data: data})
		off += FieldHeaderSize + int(size) - 1
	}
	if cap(m.Ops) < nops {
		m.Ops = make([]Op, 0, nops)
	}
	for i := range nops {
		if len(body)-off < OpHeaderSize {
			return decodeErr(ErrTruncated, opName(i), off, "op header needs %d bytes, %d left", OpHeaderSize, len(body)-off)
		}
		size := binary.BigEndian.Uint32(body[off:])
		nameLen := int(body[off+7])
		if size < 4+uint32(nameLen) {
			return decodeErr(ErrMalformed, opName(i), off, "op size %d is less than 4 + name length %d", size, nameLen)
		}
		if uint64(size)-4 > uint64(len(body)-off-OpHeaderSize) {
			return decodeErr(ErrTruncated, opName(i), off, "op of %d bytes, %d left", size-4, len(body)-off-OpHeaderSize)
		}
		if nameLen > MaxBinNameLen {
			return decodeErr(ErrTooLarge, opName(i), off+7, "bin name of %d bytes (at most %d)", nameLen, MaxBinNameLen)
		}
		op := Op{Type: OpType(body[off+4])}
		pt := ParticleType(body[off+5])
		nameAt := off + OpHeaderSize
		op.Bin = string(body[nameAt : nameAt+nameLen])
		valAt := nameAt + nameLen
		end := off + OpHeaderSize + int(size) - 4
		op.Value = RawValue(pt, body[valAt:end])
		if err := op.Value.check(); err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.What = fmt.Sprintf("%s (bin %q) %s", opName(i), op.Bin, de.What)
				de.Offset += valAt
				return de
			}
			return decodeErr(ErrMalformed, opName(i), valAt, "bin %q: %v", op.Bin, err)
		}
		m.Ops = append(m.Ops, op)
		off = end
	}
	if off != len(body) {
		return decodeErr(ErrMalformed, "message", off, "%d bytes after the last op", len(body)-off)
	}
	return nil
}

func fieldName(i int) string { return fmt.Sprintf("field %d", i) }
func opName(i int) string    { return fmt.Sprintf("op %d", i) }
