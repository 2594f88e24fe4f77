package arena

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Key is a SysV IPC key.
//
// shmkit's key scheme keeps every key it makes out of the ranges Aerospike
// uses (the C client's 0xA5…–0xAC… and the server's 0xAE…, 0xA2… and
// 0xAD… prefixes), so that neither can attach, resize-check or remove the
// other's segments by accident:
//
//	 31      24 23     16 15              4 3      0
//	+----------+---------+-----------------+--------+
//	|   0x53   |  class  |    instance     | stage  |
//	+----------+---------+-----------------+--------+
//
// 0x53 ('S') marks shmkit. Class separates uses (cluster state, index,
// pool, test); instance (12 bits) separates clusters or tenants; stage (4
// bits) numbers the extra segments a pool grows into (0 = the main segment).
type Key uint32

// KeyPrefix is the top byte of every key shmkit makes.
const KeyPrefix = 0x53

// Key classes: bits 16–23 of a key.
const (
	ClassCluster = 0x01
	ClassIndex   = 0x02
	ClassPool    = 0x03
	ClassLease   = 0x04
	ClassTest    = 0x7e
)

// MaxStages is how many stages (main segment included) one key can carry.
const MaxStages = 16

// MakeKey builds a key of the shmkit scheme.
func MakeKey(class uint8, instance uint16) Key {
	return Key(uint32(KeyPrefix)<<24 | uint32(class)<<16 | uint32(instance&0xfff)<<4)
}

// IsShmkit reports whether k has the shmkit prefix.
func (k Key) IsShmkit() bool { return k>>24 == KeyPrefix }

// Stage returns the stage number carried in the low 4 bits.
func (k Key) Stage() int { return int(k & 0xf) }

// WithStage returns the key of stage n (0 ≤ n < MaxStages) of the same base.
func (k Key) WithStage(n int) Key { return k&^0xf | Key(n&0xf) }

// aerospikePrefixes are the top bytes of the keys Aerospike's clients and
// servers use.
func aerospikeOwned(k Key) bool {
	switch k >> 24 {
	case 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAE, 0xA2, 0xAD:
		return true
	}
	return false
}

func (k Key) String() string { return fmt.Sprintf("0x%08x", uint32(k)) }

// ParseKey parses a key written as hex (0x53010000) or decimal.
func ParseKey(s string) (Key, error) {
	var v uint64
	var err error
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		v, err = strconv.ParseUint(h, 16, 32)
	} else if h, ok := strings.CutPrefix(s, "0X"); ok {
		v, err = strconv.ParseUint(h, 16, 32)
	} else {
		v, err = strconv.ParseUint(s, 10, 32)
	}
	if err != nil {
		return 0, fmt.Errorf("arena: key %q: want a 32-bit hex (0x…) or decimal number", s)
	}
	return Key(v), nil
}

// DefaultDir is where file segments live unless a path says otherwise:
// tmpfs, so they behave like SysV segments but show up as files.
const DefaultDir = "/dev/shm"

// FilePrefix starts the base name of every file segment shmkit names itself
// (Aerospike's tools use none like it).
const FilePrefix = "shmkit."

// DefaultFilePath returns DefaultDir/shmkit.<name>.
func DefaultFilePath(name string) string {
	return filepath.Join(DefaultDir, FilePrefix+name)
}
