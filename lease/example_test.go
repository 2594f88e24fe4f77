package lease_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
)

// Two owners in turn. The first loses the lease (its heartbeat expires); its
// late write is refused because the word it writes carries the new owner's
// epoch.
func Example() {
	store := arena.NewHeapStore()
	loc := store.At("lease")
	seg, err := arena.OpenOrCreate(context.Background(), loc, arena.Options{Spec: layout.Spec{
		Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "lease", Size: lease.Size}, {Name: "data", Size: 8}}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arena.Remove(loc, arena.RemoveOptions{Force: true})
	defer seg.Close()
	rec, _, _ := seg.Section("lease")
	word, _, _ := seg.Section("data")

	cfg := lease.Config{Threshold: 20 * time.Millisecond, Logger: quiet()}
	old, _ := lease.New(seg, rec, cfg)
	a, _ := old.TryAcquire()
	old.Stamp(seg, word)
	ok, _ := old.FencedCAS(seg, word, 0, 1)
	fmt.Println("first owner:", a.Epoch, a.Reason, ok)

	// The old owner stops renewing (hung, stopped, …); another takes over.
	next, _ := lease.New(seg, rec, cfg)
	b, _ := next.Acquire(context.Background())
	next.Stamp(seg, word)
	fmt.Println("second owner:", b.Epoch, b.Reason)

	_, err = old.FencedCAS(seg, word, 1, 2)
	fmt.Println("late write fenced:", errors.Is(err, lease.ErrFenced))
	_, v := lease.SplitFenced(seg.Load64(word))
	fmt.Println("value:", v)
	// Output:
	// first owner: 1 first owner true
	// second owner: 2 heartbeat expired
	// late write fenced: true
	// value: 1
}
