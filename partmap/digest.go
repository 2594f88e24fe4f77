// Key digests and partition ids, as Aerospike computes them.
//
// A record's digest is RIPEMD-160 over the set name, one particle-type byte
// for the user key and the user key's bytes; its partition is the
// little-endian uint16 in digest bytes 0–1 masked to 12 bits.

package partmap

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	// RIPEMD-160 is what the Aerospike server and every official client hash
	// keys with. We take it from x/crypto rather than writing our own: it is
	// deprecated only in the sense that new designs should not pick
	// RIPEMD-160, it is still maintained, and a home-grown hash that is off by
	// one bit would silently send every key to the wrong partition.
	"golang.org/x/crypto/ripemd160" //nolint:staticcheck // required by the wire format, see above
)

// Partitions is the number of partitions of every Aerospike namespace.
const Partitions = 4096

// partitionMask keeps the low 12 bits of the partition hash.
const partitionMask = Partitions - 1

// DigestSize is the length of a record digest in bytes.
const DigestSize = 20

// Particle types written between the set name and the key bytes when a
// digest is computed. They are the server's particle type codes.
const (
	// ParticleInteger marks an integer user key (8 bytes, big-endian).
	ParticleInteger = 1
	// ParticleString marks a string user key (its UTF-8 bytes).
	ParticleString = 3
	// ParticleBlob marks a byte-slice user key (its bytes).
	ParticleBlob = 4
)

// ErrPartitionOutOfRange reports a partition id that is not below Partitions.
var ErrPartitionOutOfRange = errors.New("partmap: partition id out of range")

// ErrDigestLength reports a digest whose length is not DigestSize.
var ErrDigestLength = errors.New("partmap: digest length is not 20 bytes")

// Digest is the 20-byte RIPEMD-160 digest that identifies a record.
type Digest [DigestSize]byte

// StringKeyDigest returns the digest of a record in set with a string key.
func StringKeyDigest(set, key string) Digest {
	return digestOf(set, ParticleString, []byte(key))
}

// IntKeyDigest returns the digest of a record in set with an integer key.
// Every Go integer type the official client accepts as a key hashes the same
// way: as an int64 in 8 big-endian bytes.
func IntKeyDigest(set string, key int64) Digest {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(key))
	return digestOf(set, ParticleInteger, b[:])
}

// BytesKeyDigest returns the digest of a record in set with a []byte key.
func BytesKeyDigest(set string, key []byte) Digest {
	return digestOf(set, ParticleBlob, key)
}

func digestOf(set string, particle byte, key []byte) Digest {
	h := ripemd160.New()
	// hash.Hash.Write never returns an error.
	_, _ = h.Write([]byte(set))
	_, _ = h.Write([]byte{particle})
	_, _ = h.Write(key)
	var d Digest
	h.Sum(d[:0])
	return d
}

// ParseDigest copies b into a Digest; b must be exactly DigestSize bytes.
func ParseDigest(b []byte) (Digest, error) {
	var d Digest
	if len(b) != DigestSize {
		return d, fmt.Errorf("%w: got %d bytes", ErrDigestLength, len(b))
	}
	copy(d[:], b)
	return d, nil
}

// DigestForPartition returns a digest (all bytes zero except the partition
// bytes) whose PartitionID is pid. Tests use it to address a partition
// without searching for a key that hashes there.
func DigestForPartition(pid uint32) (Digest, error) {
	var d Digest
	if pid >= Partitions {
		return d, fmt.Errorf("%w: %d (want < %d)", ErrPartitionOutOfRange, pid, Partitions)
	}
	binary.LittleEndian.PutUint16(d[:2], uint16(pid))
	return d, nil
}

// PartitionID returns the partition the digest belongs to: the little-endian
// uint16 in bytes 0–1, masked to 0..4095.
func (d Digest) PartitionID() uint32 {
	return uint32(binary.LittleEndian.Uint16(d[:2])) & partitionMask
}

// String returns the digest as 40 lowercase hex digits.
func (d Digest) String() string {
	return hex.EncodeToString(d[:])
}
