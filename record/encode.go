package record

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
)

// Key names a record: namespace, set, the user key (a wire.Value: integer,
// string or blob; null for a key made from a digest) and the digest of the
// set and user key, which routes the command.
type Key = wire.Key

// NewKey returns the key of a record with user key value (a string, a
// []byte or a Go integer) in namespace ns, set set, with its digest
// computed as every Aerospike client computes it.
func NewKey(ns, set string, value any) (Key, error) {
	k, err := wire.NewKey(ns, set, value)
	if err != nil {
		return k, fmt.Errorf("record: %w: %w", ErrInvalid, err)
	}
	return k, nil
}

// NewKeyWithDigest returns the key of the record with digest d.
func NewKeyWithDigest(ns, set string, d partmap.Digest) (Key, error) {
	k, err := wire.NewDigestKey(ns, set, d)
	if err != nil {
		return k, fmt.Errorf("record: %w: %w", ErrInvalid, err)
	}
	return k, nil
}

// encode builds cmd's request in cn.wbuf.
func (cmd *command) encode(cn *conn, p *Policy) error {
	var h wire.Header
	ops := cn.ops[:0]
	sendKey := false
	if p.TotalTimeout > 0 {
		h.Timeout = uint32(min(p.TotalTimeout.Milliseconds(), 1<<32-1))
	}
	switch cmd.kind {
	case kindGet:
		h.Info1 = wire.Info1Read
		if len(cmd.names) == 0 {
			h.Info1 |= wire.Info1GetAll
		}
		for _, n := range cmd.names {
			ops = append(ops, wire.Op{Type: wire.OpRead, Bin: n})
		}
	case kindExists:
		h.Info1 = wire.Info1Read | wire.Info1NoBinData
	default:
		wp := cmd.wp
		sendKey = wp.SendKey
		h.Info2 = wire.Info2Write
		h.Expiration = wp.Expiration
		switch wp.GenerationPolicy {
		case NONE:
		case EXPECT_GEN_EQUAL:
			h.Info2 |= wire.Info2Generation
			h.Generation = wp.Generation
		case EXPECT_GEN_GT:
			h.Info2 |= wire.Info2GenerationGT
			h.Generation = wp.Generation
		default:
			return fmt.Errorf("record: GenerationPolicy %v: %w", wp.GenerationPolicy, ErrInvalid)
		}
		switch cmd.kind {
		case kindDelete:
			h.Info2 |= wire.Info2Delete
		case kindTouch:
			ops = append(ops, wire.Op{Type: wire.OpTouch})
		case kindPut, kindAdd:
			if cmd.kind == kindPut {
				switch wp.RecordExistsAction {
				case UPDATE:
				case UPDATE_ONLY:
					h.Info3 |= wire.Info3UpdateOnly
				case REPLACE:
					h.Info3 |= wire.Info3CreateOrReplace
				case REPLACE_ONLY:
					h.Info3 |= wire.Info3ReplaceOnly
				case CREATE_ONLY:
					h.Info2 |= wire.Info2CreateOnly
				default:
					return fmt.Errorf("record: RecordExistsAction %v: %w", wp.RecordExistsAction, ErrInvalid)
				}
			}
			t := wire.OpWrite
			if cmd.kind == kindAdd {
				t = wire.OpAdd
			}
			for name, x := range cmd.bins {
				v, err := wire.ValueOf(x)
				if err != nil {
					return fmt.Errorf("record: bin %q: %w: %w", name, ErrInvalid, err)
				}
				if t == wire.OpAdd && v.Type() != wire.ParticleInteger {
					return fmt.Errorf("record: add to bin %q: a %T, not an integer: %w", name, x, ErrInvalid)
				}
				ops = append(ops, wire.Op{Type: t, Bin: name, Value: v})
			}
		}
	}
	b, err := wire.AppendCommand(cn.wbuf[:0], &h, &cmd.key, sendKey, ops)
	clear(ops) // drop references to the caller's values
	cn.ops = ops[:0]
	if err != nil {
		return fmt.Errorf("record: %s %s: %w: %w", cmd.kind, cmd.key.Namespace, ErrInvalid, err)
	}
	cn.wbuf = b
	return nil
}

// decode reads the reply body into cmd: the result code, and for Get the
// record.
func (cmd *command) decode(cn *conn, body []byte) error {
	m := &cn.msg
	if err := m.Decode(body); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	rc := m.ResultCode
	switch {
	case rc == wire.ResultOK:
	case rc == wire.ResultKeyNotFound && (cmd.kind == kindExists || cmd.kind == kindDelete):
		cmd.found = false
		return nil
	default:
		return fmt.Errorf("record: %s %s: %w", cmd.kind, keyString(&cmd.key), rc)
	}
	cmd.found = true
	if cmd.kind != kindGet {
		return nil
	}
	rec := &Record{Key: cmd.key, Generation: m.Generation, Expiration: wire.VoidTimeTTL(m.Expiration, time.Now()),
		Bins: make(BinMap, len(m.Ops))}
	for i := range m.Ops {
		op := &m.Ops[i]
		v, err := binValue(op.Value)
		if err != nil {
			return fmt.Errorf("%w: bin %q: %w", ErrProtocol, op.Bin, err)
		}
		rec.Bins[op.Bin] = v
	}
	cmd.rec = rec
	return nil
}

// binValue converts a decoded value to a Go value that owns its memory
// (the reply buffer is reused by the next command on the connection).
func binValue(v wire.Value) (any, error) {
	if v.Type() == wire.ParticleBlob {
		b, err := v.AsBytes()
		return bytes.Clone(b), err
	}
	x, err := v.Any()
	if err != nil {
		return nil, err
	}
	return ownValue(x), nil
}

// ownValue copies the []byte elements of lists and maps.
func ownValue(x any) any {
	switch x := x.(type) {
	case []byte:
		return bytes.Clone(x)
	case []any:
		for i, e := range x {
			x[i] = ownValue(e)
		}
	case map[any]any:
		for k, e := range x {
			x[k] = ownValue(e)
		}
	}
	return x
}

func keyString(k *Key) string {
	if k.UserKey.Type() == wire.ParticleNull {
		return fmt.Sprintf("%s:%s:%s", k.Namespace, k.Set, k.Digest)
	}
	if x, err := k.UserKey.Any(); err == nil {
		return fmt.Sprintf("%s:%s:%v", k.Namespace, k.Set, x)
	}
	return fmt.Sprintf("%s:%s:%s", k.Namespace, k.Set, k.Digest)
}

// Server result codes as errors.Is targets (they are wire.ResultCode
// values): errors.Is(err, ErrKeyNotFound) holds for a command that found
// no record.
const (
	// ErrKeyNotFound: the record does not exist (2).
	ErrKeyNotFound = wire.ErrKeyNotFound
	// ErrGenerationMismatch: a generation-checked write found another
	// generation (3).
	ErrGenerationMismatch = wire.ErrGenerationMismatch
	// ErrKeyExists: a CREATE_ONLY write found the record (5).
	ErrKeyExists = wire.ErrKeyExists
	// ErrBinTypeMismatch: e.g. an Add to a string bin (12).
	ErrBinTypeMismatch = wire.ErrBinTypeMismatch
	// ErrRecordTooBig: the record exceeds the namespace's limit (13).
	ErrRecordTooBig = wire.ErrRecordTooBig
	// ErrKeyBusy: too many concurrent commands on the record (14).
	ErrKeyBusy = wire.ErrKeyBusy
	// ErrServerTimeout: the server gave up on the command (9); retried
	// like a network timeout.
	ErrServerTimeout = wire.ErrServerTimeout
	// ErrPartitionUnavailable: no available copy of the partition (11).
	ErrPartitionUnavailable = wire.ErrPartitionUnavailable
	// ErrParameter: the server rejected a parameter (4).
	ErrParameter = wire.ErrParameter
	// ErrInvalidNamespace: the server has no such namespace (20).
	ErrInvalidNamespace = wire.ErrInvalidNamespace
	// ErrBinNameTooLong: a bin name over 15 bytes (21).
	ErrBinNameTooLong = wire.ErrBinNameTooLong
)

// ResultCode returns the server result code err holds, if any.
func ResultCode(err error) (wire.ResultCode, bool) {
	var rc wire.ResultCode
	ok := errors.As(err, &rc)
	return rc, ok
}
