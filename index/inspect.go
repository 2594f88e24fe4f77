package index

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// Summary describes an index found at a location, for tools (shmctl
// inspect): its fingerprint, stage use and counts.
type Summary struct {
	Config       Config // the fingerprint fields and Store, from the header
	Stages       uint64 // stages in use (stage 0 lives in the main segment)
	StageEntries uint64 // entry lines per stage
	HandedOut    uint64 // lines ever handed out (in sprig tables or free)
	TableLines   uint64 // lines in sprig tables (entries and empty lines)
	Free         uint64 // lines in runs on the free lists
	Live         uint64 // entries in sprigs (meta's count)
	Count        uint64 // sum of the partition counts
	Tombstones   uint64 // sum of the partition tombstone counts
	Bytes        uint64 // sum of the partition byte counts
	Partitions   int    // partitions holding at least one entry
	MaxPartition uint64 // entries in the fullest partition
	CleanCount   uint64 // clean shutdowns recorded
}

// ConfigAt derives the Config of the index whose main segment is at loc
// from its header (kind index, block 0): the fingerprint fields and a
// Store that finds its stages (SysVAt the key's base for SysV, Dir of the
// file's directory, checked against the name the Dir store gives the main
// block). Mode and AllowUIDs accept the segment's owner and mode, so that
// a tool run by another user may read it.
func ConfigAt(loc arena.Location) (Config, error) {
	st, err := arena.StatOf(loc)
	if err != nil {
		return Config{}, err
	}
	seg, err := arena.Inspect(loc)
	if err != nil {
		return Config{}, err
	}
	h := seg.Header()
	seg.Close()
	if h.Kind != layout.KindIndex {
		return Config{}, fmt.Errorf("index: %s is a %s segment, not an index: %w", loc, h.Kind, ErrCorrupt)
	}
	get := func(name string) uint64 { v, _ := h.Field(name); return v }
	for _, f := range []string{fieldFormat, fieldEntrySize, fieldSprigs, fieldStage, fieldInstance, fieldNamespace, fieldDataInIndex, fieldBlock} {
		if _, ok := h.Field(f); !ok {
			return Config{}, fmt.Errorf("index: %s: header lacks field %s: %w", loc, f, ErrCorrupt)
		}
	}
	if b := get(fieldBlock); b != 0 {
		return Config{}, fmt.Errorf("index: %s is stage block %d of an index, not its main segment: %w", loc, b, ErrCorrupt)
	}
	if f := get(fieldFormat); f != formatVersion {
		return Config{}, fmt.Errorf("index: %s: index format %d, this code reads %d: %w", loc, f, formatVersion, ErrCorrupt)
	}
	cfg := Config{
		Instance: uint8(min(get(fieldInstance), 255)), Namespace: uint8(min(get(fieldNamespace), 255)),
		Sprigs: int(min(get(fieldSprigs), 1<<30)), StageEntries: int(min(get(fieldStage), 1<<40)),
		DataInIndex: get(fieldDataInIndex) != 0,
		Mode:        st.Mode, AllowUIDs: []uint32{st.OwnerUID},
	}
	switch {
	case st.Path != "":
		cfg.Store = Dir(filepath.Dir(st.Path))
	case st.Key != 0:
		cfg.Store = SysVAt(st.Key &^ 0xff)
	default:
		return Config{}, fmt.Errorf("index: %s: only SysV and file segments can be inspected: %w", loc, ErrConfig)
	}
	if err := cfg.normalize(); err != nil {
		return Config{}, fmt.Errorf("index: %s: header: %w", loc, err)
	}
	if got := cfg.Store.block(&cfg, 0).String(); got != loc.String() {
		return Config{}, fmt.Errorf("index: %s: an index of instance %d namespace %d keeps its main segment at %s: %w",
			loc, cfg.Instance, cfg.Namespace, got, ErrConfig)
	}
	return cfg, nil
}

// OpenReaderAt opens a Reader on the index whose main segment is at loc
// (see ConfigAt).
func OpenReaderAt(ctx context.Context, loc arena.Location) (*Reader, error) {
	cfg, err := ConfigAt(loc)
	if err != nil {
		return nil, err
	}
	return OpenReader(ctx, cfg)
}

// InspectAt summarizes the index whose main segment is at loc.
func InspectAt(ctx context.Context, loc arena.Location) (*Summary, error) {
	r, err := OpenReaderAt(ctx, loc)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.summary(), nil
}

// CheckAt runs Check (a *CheckError lists the problems) on the index
// whose main segment is at loc. The writer must be quiescent.
func CheckAt(ctx context.Context, loc arena.Location) error {
	r, err := OpenReaderAt(ctx, loc)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Check()
}

func (r *Reader) summary() *Summary {
	v := &r.v
	s := &Summary{Config: v.cfg, StageEntries: v.stageElems,
		Stages: v.meta.Load(mStages), HandedOut: v.meta.Load(mNext), TableLines: v.meta.Load(mTableLines), Free: v.meta.Load(mFreeCount),
		Live: v.meta.Load(mLive), CleanCount: v.meta.Load(mCleanCount)}
	for p := range Partitions {
		ps := r.Partition(p)
		s.Count += ps.Count
		s.Tombstones += ps.Tombstones
		s.Bytes += ps.Bytes
		if ps.Count > 0 {
			s.Partitions++
		}
		s.MaxPartition = max(s.MaxPartition, ps.Count)
	}
	return s
}

// StageLocations returns the locations of the stage segments (blocks 1
// and up) of the index cfg describes that exist now, in block order, for
// tools that remove or copy a whole index (its main segment is block 0).
func StageLocations(cfg Config) ([]arena.Location, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	var out []arena.Location
	for b := 1; b < MaxStages; b++ {
		loc := cfg.Store.block(&cfg, b)
		if _, err := arena.StatOf(loc); err == nil {
			out = append(out, loc)
		}
	}
	return out, nil
}
