package index

import (
	"fmt"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// Support for backup tools (package backup, shmctl backup/restore).

// LeaseSection is the name of the main segment's section that holds the
// writer lease (a lease.Size record): a backup or restore holds that lease
// so that no writer can start on the index meanwhile.
const LeaseSection = secLease

// BlockLocation returns where block b (0: the main segment, k: stage k) of
// the index configured by cfg lives. Only Store, Instance and Namespace of
// cfg are used.
func BlockLocation(cfg Config, b int) (arena.Location, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if b < 0 || b >= MaxStages {
		return nil, fmt.Errorf("index: block %d outside 0–%d: %w", b, MaxStages-1, ErrConfig)
	}
	return cfg.Store.block(&cfg, b), nil
}

// SavedBlocks returns the locations of the blocks of the saved index of
// cfg, the main segment first, as many as its meta says it has stages. It
// attaches the main segment read-only in spirit (arena.Inspect) and fails
// with arena.ErrNotFound if there is none, or with ErrCorrupt if the
// segment is not an index main segment or its stage count is out of range.
func SavedBlocks(cfg Config) ([]arena.Location, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	loc := cfg.Store.block(&cfg, 0)
	seg, err := arena.Inspect(loc)
	if err != nil {
		return nil, fmt.Errorf("index: %s: %w", loc, err)
	}
	defer seg.Close()
	h := seg.Header()
	if h.Kind != layout.KindIndex {
		return nil, corrupt("%s is a %s segment, not an index", loc, h.Kind)
	}
	if b, ok := h.Field(fieldBlock); !ok || b != 0 {
		return nil, corrupt("%s is not block 0 of an index (block field %d)", loc, b)
	}
	off, size, err := seg.Section(secMeta)
	if err != nil || size < metaWords*8 {
		return nil, corrupt("%s: no meta section of %d bytes (%v)", loc, metaWords*8, err)
	}
	stages := seg.Load64(off + mStages*8)
	if stages < 1 || stages > MaxStages {
		return nil, corrupt("%s: meta says %d stages, want 1–%d", loc, stages, MaxStages)
	}
	out := []arena.Location{loc}
	for k := 1; k < int(stages); k++ {
		out = append(out, cfg.Store.block(&cfg, k))
	}
	return out, nil
}
