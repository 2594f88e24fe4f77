package index

import (
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
)

// Store says where an index keeps its segments ("blocks"): block 0 is the
// main segment (header, meta, writer lease, sprig table, partition
// statistics and stage 0), block k (1 ≤ k < 256) is stage k.
type Store struct {
	kind    storeKind
	base    arena.Key // SysVAt's base key (hasBase)
	hasBase bool
	dir     string
	heap    *arena.HeapStore
	name    string
}

type storeKind uint8

const (
	storeNone storeKind = iota
	storeSysV
	storeDir
	storeHeap
)

// SysVKey returns the SysV key of block of the index of namespace in
// instance, under shmkit's key scheme:
//
//	 31      24 23     16 15      12 11       8 7          0
//	+----------+---------+----------+----------+------------+
//	|   0x53   |  0x02   | instance | namespace|   block    |
//	+----------+---------+----------+----------+------------+
//
// 0x53 marks shmkit and 0x02 is arena.ClassIndex, so these keys never fall
// in Aerospike's ranges (0xA2…, 0xA5…–0xAC…, 0xAD…, 0xAE…). Instance and
// namespace take 4 bits each (0–15); block 0 is the main segment and block
// k the stage k (8 bits: 256 stages, stage 0 living in the main segment).
func SysVKey(instance, namespace uint8, block int) arena.Key {
	return arena.Key(uint32(arena.KeyPrefix)<<24 | uint32(arena.ClassIndex)<<16 |
		uint32(instance&0xf)<<12 | uint32(namespace&0xf)<<8 | uint32(block&0xff))
}

// SysV keeps the index in SysV segments at SysVKey(instance, namespace, ·)
// of the Config.
func SysV() Store { return Store{kind: storeSysV} }

// SysVAt keeps the index in SysV segments at base|block; base's low 8 bits
// must be zero. Tests use it with keys of arena.ClassTest.
func SysVAt(base arena.Key) Store { return Store{kind: storeSysV, base: base, hasBase: true} }

// Dir keeps the index in files in dir, named index-i<instance>-n<namespace>.b<block>:
// they survive a change of IPC namespace and can be copied with ordinary
// tools. Data is written back (msync) before the clean-shutdown marker.
func Dir(dir string) Store { return Store{kind: storeDir, dir: dir} }

// Heap keeps the index in heap segments of h (for tests under the race
// detector), named name.b<block>.
func Heap(h *arena.HeapStore, name string) Store {
	return Store{kind: storeHeap, heap: h, name: name}
}

// block returns the location of block b for cfg.
func (s Store) block(cfg *Config, b int) arena.Location {
	switch s.kind {
	case storeSysV:
		if s.hasBase {
			return arena.SysV(s.base | arena.Key(b&0xff))
		}
		return arena.SysV(SysVKey(cfg.Instance, cfg.Namespace, b))
	case storeDir:
		return arena.File(filepath.Join(s.dir, fmt.Sprintf("index-i%d-n%d.b%03d", cfg.Instance, cfg.Namespace, b)))
	case storeHeap:
		return s.heap.At(fmt.Sprintf("%s.b%03d", s.name, b))
	}
	return nil
}

// String names the store for messages.
func (s Store) String() string {
	switch s.kind {
	case storeSysV:
		return "sysv"
	case storeDir:
		return "dir " + s.dir
	case storeHeap:
		return "heap " + s.name
	}
	return "none"
}

// StorageID identifies the storage an index describes: a UUID kept in the
// storage's own header (not an inode: a restore on another host stays
// warm), its committed length and, for a storage that numbers its writes,
// the sequence of its next write. The identity recorded at a clean
// shutdown must equal the one the storage reports at the next start for
// the start to be warm; any field that differs makes it cold
// (ReasonStorageChanged).
type StorageID struct {
	UUID      [16]byte
	Committed uint64 // committed length (for a log of several files, e.g. head file << 40 | offset)
	Seq       uint64 // sequence of the next write, if the storage has one (0 otherwise)
}

// Config configures an index. Instance, Namespace, Sprigs, StageEntries
// and DataInIndex form its fingerprint: a segment written with other
// values is never reused (the start is cold, naming the field).
type Config struct {
	// Store is where the segments live (SysV, Dir or Heap). Required.
	Store Store
	// Instance (0–15) and Namespace (0–15) separate indexes on one host.
	Instance  uint8
	Namespace uint8
	// Sprigs is the number of sprigs per partition (Aerospike's
	// partition-tree-sprigs): a power of two from 1 to 4096; default 4
	// (a 128 KiB table of sprig words, 8 bytes a sprig, that stays in the
	// caches, and as much for the writer's table counts).
	// Each sprig is a sorted hash table in one run of lines inside a stage,
	// so a sprig holds at most about 0.88 × StageEntries entries (ErrFull
	// beyond): more sprigs for more records or smaller stages. See the
	// package doc.
	Sprigs int
	// StageEntries is the number of entries per stage (Aerospike's
	// index-stage-size / 64): a power of two from 64 to 2^28; default 2^24
	// (1 GiB stages).
	StageEntries int
	// DataInIndex keeps a single int64 value in each entry instead of a
	// storage location.
	DataInIndex bool
	// Storage is the identity the storage reports now (compared with the
	// one recorded at the last clean shutdown).
	Storage StorageID
	// ForceCold discards the saved index and rebuilds it.
	ForceCold bool
	// CheckOnWarm runs Check before accepting a warm restart; problems
	// make the start cold with ReasonDamaged.
	CheckOnWarm bool
	// Mode and AllowUIDs are passed to arena (permissions of created
	// segments, owners accepted).
	Mode      os.FileMode
	AllowUIDs []uint32
	// HugePages is passed to arena (arena.Options.HugePages): whether the
	// segments this writer creates get 2 MiB pages (off, try, require).
	HugePages arena.HugePagePolicy
	// LeaseThreshold is the writer lease's heartbeat threshold (default
	// lease.DefaultThreshold).
	LeaseThreshold time.Duration
	// Failpoints arms the index's failpoints (tests).
	Failpoints *failpoint.Set
	// Logger receives the restart messages; default slog.Default().
	Logger *slog.Logger

	// Test knobs (unexported): the negative controls of the tests.
	noValidate bool // readers skip the sprig version re-check
	noFence    bool // the writer gate is neither stamped nor passed (writes unfenced, as before)
	// buildRootsFirst: a bulk build publishes the second half of its
	// sprigs before it writes their entries.
	buildRootsFirst bool
}

// Defaults.
const (
	DefaultSprigs       = 4
	DefaultStageEntries = 1 << 24
	minStageEntries     = 64
)

func (c *Config) normalize() error {
	if c.Sprigs == 0 {
		c.Sprigs = DefaultSprigs
	}
	if c.StageEntries == 0 {
		c.StageEntries = DefaultStageEntries
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LeaseThreshold <= 0 {
		c.LeaseThreshold = lease.DefaultThreshold
	}
	switch {
	case c.Store.kind == storeNone:
		return fmt.Errorf("index: Config.Store is not set: use index.SysV(), index.Dir(path) or index.Heap(store, name): %w", ErrConfig)
	case c.Sprigs < 1 || c.Sprigs > 4096 || bits.OnesCount(uint(c.Sprigs)) != 1:
		return fmt.Errorf("index: Config.Sprigs %d: want a power of two from 1 to 4096: %w", c.Sprigs, ErrConfig)
	case c.StageEntries < minStageEntries || c.StageEntries > MaxElems || bits.OnesCount(uint(c.StageEntries)) != 1:
		return fmt.Errorf("index: Config.StageEntries %d: want a power of two from %d to 2^28: %w", c.StageEntries, minStageEntries, ErrConfig)
	case c.Instance > 15 || c.Namespace > 15:
		return fmt.Errorf("index: Config.Instance %d / Namespace %d: each must be 0–15 (4 bits of the SysV key): %w", c.Instance, c.Namespace, ErrConfig)
	case c.Store.kind == storeSysV && c.Store.hasBase && c.Store.base&0xff != 0:
		return fmt.Errorf("index: SysVAt base key %s: the low 8 bits must be zero (they number the blocks): %w", c.Store.base, ErrConfig)
	}
	return nil
}

// sprigShift is how far sprigBits are shifted to give the sprig number.
func (c *Config) sprigShift() uint { return uint(28 - bits.TrailingZeros(uint(c.Sprigs))) }

// Fingerprint field names (at most 16 bytes: layout.NameLen) and the names
// the restart reason uses for them (Aerospike's configuration names where
// there is one).
const (
	fieldFormat      = "index-format"
	fieldEntrySize   = "entry-size"
	fieldSprigs      = "tree-sprigs"
	fieldStage       = "stage-entries"
	fieldInstance    = "instance"
	fieldNamespace   = "namespace"
	fieldDataInIndex = "data-in-index"
	fieldBlock       = "block"

	// formatVersion is the version of the index's own structures (entry,
	// meta, sprig and partition records); a change makes every saved
	// index cold. 3: sorted-hash sprig tables (2: AVL trees).
	formatVersion = 3
)

// displayName maps a fingerprint field to its name in reasons.
func displayName(field string) string {
	switch field {
	case fieldSprigs:
		return "partition-tree-sprigs"
	case fieldStage:
		return "index-stage-entries"
	}
	return field
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (c *Config) fields(block int) []layout.Field {
	return []layout.Field{
		{Name: fieldFormat, Value: formatVersion},
		{Name: fieldEntrySize, Value: EntrySize},
		{Name: fieldSprigs, Value: uint64(c.Sprigs)},
		{Name: fieldStage, Value: uint64(c.StageEntries)},
		{Name: fieldInstance, Value: uint64(c.Instance)},
		{Name: fieldNamespace, Value: uint64(c.Namespace)},
		{Name: fieldDataInIndex, Value: b2u(c.DataInIndex)},
		{Name: fieldBlock, Value: uint64(block)},
	}
}

// Sections of the main segment.
const (
	secMeta   = "meta"
	secLease  = "lease"
	secSprigs = "sprigs"
	secCounts = "counts"
	secAlloc  = "alloc"
	secParts  = "parts"
	secStage0 = "stage0"
	secStage  = "entries"
)

func (c *Config) mainSpec() layout.Spec {
	return layout.Spec{Kind: layout.KindIndex, Fields: c.fields(0), Sections: []layout.SectionSpec{
		{Name: secMeta, Size: metaWords * 8},
		{Name: secLease, Size: lease.Size},
		{Name: secSprigs, Size: uint64(Partitions*c.Sprigs) * 8},
		{Name: secCounts, Size: uint64(Partitions*c.Sprigs) * 8},
		{Name: secAlloc, Size: allocWords * 8},
		{Name: secParts, Size: Partitions * partWords * 8},
		{Name: secStage0, Size: uint64(c.StageEntries) * EntrySize},
	}}
}

func (c *Config) stageSpec(k int) layout.Spec {
	return layout.Spec{Kind: layout.KindIndex, Fields: c.fields(k), Sections: []layout.SectionSpec{
		{Name: secStage, Size: uint64(c.StageEntries) * EntrySize},
	}}
}

func (c *Config) segOptions(spec layout.Spec) arena.Options {
	return arena.Options{Spec: spec, Mode: c.Mode, AllowUIDs: c.AllowUIDs, HugePages: c.HugePages, Logger: c.Logger, Failpoints: c.Failpoints}
}
