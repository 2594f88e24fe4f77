package seqlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/seqlock"
)

// A table of 16 records of 8 words (64 bytes) in a section of a segment.
// Processes that attach the same segment open the same table with New;
// writers and readers may be in different processes.
func Example() {
	ctx := context.Background()
	// A heap segment keeps the example self-contained; real users attach a
	// SysV or file segment (arena.SysV, arena.File).
	loc := arena.NewHeapStore().At("example")
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{
		{Name: "quotes", Size: seqlock.SizeOf(16, 8)},
	}}
	seg, err := arena.OpenOrCreate(ctx, loc, arena.Options{Spec: spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arena.Remove(loc, arena.RemoveOptions{Force: true})
	defer seg.Close()
	off, _, err := seg.Section("quotes")
	if err != nil {
		fmt.Println(err)
		return
	}
	tab, err := seqlock.New(seg, off, 16, 8, seqlock.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Writer side.
	if err := tab.Write(3, []uint64{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		fmt.Println(err)
		return
	}

	// Reader side: a consistent copy, or a typed error.
	rec := make([]uint64, tab.Words())
	err = tab.Read(3, rec)
	var stalled *seqlock.StalledError
	switch {
	case errors.As(err, &stalled) && stalled.Dead:
		// The writer died mid-write: mark the record torn (or rewrite it).
		_, _ = tab.Recover(stalled.Record)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(rec)
	}

	// All records as of one instant.
	all := make([][]uint64, tab.Records())
	for i := range all {
		all[i] = make([]uint64, tab.Words())
	}
	if err := tab.Snapshot(all); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(all[3][7], all[0][0])
	// Output:
	// [1 2 3 4 5 6 7 8]
	// 8 0
}
