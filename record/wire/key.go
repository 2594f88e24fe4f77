package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/shmkit/shmkit/partmap"
)

// CitrusleafEpoch is the Unix time of the server's epoch (2010-01-01
// 00:00:00 UTC): a reply's void time counts seconds from it.
const CitrusleafEpoch = 1262304000

// Key names a record: namespace, set and digest, plus the user key it was
// computed from when known.
type Key struct {
	// Namespace is the namespace (1 to MaxNamespaceLen bytes).
	Namespace string
	// Set is the set name (may be empty).
	Set string
	// Digest is RIPEMD-160 over the set, the user key's particle type and
	// the user key's bytes.
	Digest partmap.Digest
	// UserKey is the user key: an integer, string or blob Value, or the
	// null Value when only the digest is known.
	UserKey Value
}

// NewKey builds the key of the record with user key userKey (an integer
// type, a string or a []byte) in namespace ns and set set, computing its
// digest as the server does.
func NewKey(ns, set string, userKey any) (Key, error) {
	k := Key{Namespace: ns, Set: set}
	switch v := userKey.(type) {
	case string:
		k.UserKey = StringValue(v)
	case []byte:
		k.UserKey = BytesValue(v)
	default:
		i, ok := asInt64(userKey)
		if !ok {
			return k, fmt.Errorf("%w: user key of type %T (want an integer, string or []byte)", ErrInvalid, userKey)
		}
		k.UserKey = IntValue(i)
	}
	if err := k.validate(); err != nil {
		return k, err
	}
	d, err := KeyDigest(set, k.UserKey)
	if err != nil {
		return k, err
	}
	k.Digest = d
	return k, nil
}

// NewDigestKey builds a key from a digest alone.
func NewDigestKey(ns, set string, d partmap.Digest) (Key, error) {
	k := Key{Namespace: ns, Set: set, Digest: d}
	return k, k.validate()
}

// KeyDigest computes the digest of user key uk (an integer, string or blob
// Value) in set set.
func KeyDigest(set string, uk Value) (partmap.Digest, error) {
	switch uk.Type() {
	case ParticleInteger:
		i, err := uk.AsInt()
		if err != nil {
			return partmap.Digest{}, err
		}
		return partmap.IntKeyDigest(set, i), nil
	case ParticleString:
		s, err := uk.AsString()
		if err != nil {
			return partmap.Digest{}, err
		}
		return partmap.StringKeyDigest(set, s), nil
	case ParticleBlob:
		return partmap.BytesKeyDigest(set, uk.raw), nil
	}
	return partmap.Digest{}, fmt.Errorf("%w: user key of particle type %v (want integer, string or blob)", ErrInvalid, uk.Type())
}

// PartitionID returns the partition the key belongs to.
func (k *Key) PartitionID() uint32 { return k.Digest.PartitionID() }

func (k *Key) validate() error {
	if k.Namespace == "" || len(k.Namespace) > MaxNamespaceLen {
		return fmt.Errorf("%w: namespace %q (want 1 to %d bytes)", ErrInvalid, k.Namespace, MaxNamespaceLen)
	}
	if len(k.Set) > MaxSetLen || strings.IndexByte(k.Set, 0) >= 0 {
		return fmt.Errorf("%w: set %q (want at most %d bytes, no NUL)", ErrInvalid, k.Set, MaxSetLen)
	}
	return nil
}

// VoidTimeTTL converts a reply's void time to the record's remaining TTL
// in seconds as of now: TTLNeverExpire for 0 (never expires), at least 1
// for a void time already past (the record may not be expired on the
// server yet).
func VoidTimeTTL(voidTime uint32, now time.Time) uint32 {
	if voidTime == 0 {
		return TTLNeverExpire
	}
	left := int64(CitrusleafEpoch) + int64(voidTime) - now.Unix()
	if left < 1 {
		return 1
	}
	return uint32(min(left, int64(TTLDontUpdate-1)))
}

// VoidTime converts a TTL in seconds, given at time now, to a void time
// (0 for TTLNeverExpire).
func VoidTime(ttl uint32, now time.Time) uint32 {
	if ttl == TTLNeverExpire {
		return 0
	}
	v := now.Unix() - CitrusleafEpoch + int64(ttl)
	return uint32(max(1, min(v, int64(^uint32(0)))))
}

// beUint64 decodes 8 big-endian bytes.
func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
