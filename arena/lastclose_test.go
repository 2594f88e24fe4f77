package arena_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// TestCloseLast: the last of several attachments removes the segment; the
// earlier ones leave it.
func TestCloseLast(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.loc(t)
			opts := arena.Options{Spec: testSpec(4)}
			s1, err := arena.OpenOrCreate(context.Background(), loc, opts)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := arena.OpenOrCreate(context.Background(), loc, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rm, err := s1.CloseLast(); err != nil || rm {
				t.Fatalf("first of two: removed %v, %v; want kept", rm, err)
			}
			if _, err := arena.StatOf(loc); err != nil {
				t.Fatalf("segment gone after the first of two closed: %v", err)
			}
			if rm, err := s2.CloseLast(); err != nil || !rm {
				t.Fatalf("last: removed %v, %v; want removed", rm, err)
			}
			if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
				t.Fatalf("after the last close: %v, want ErrNotFound", err)
			}
			if rm, err := s2.CloseLast(); err != nil || rm {
				t.Errorf("second CloseLast: %v, %v; want a no-op", rm, err)
			}
		})
	}
}

// TestCloseLastRace: goroutines open, use and close-last one location over
// and over. Every open succeeds with a working segment (one that a last
// closer removed is recreated), and nothing is left at the end. The
// segment handles are separate attachments, as separate processes' are.
func TestCloseLastRace(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.loc(t)
			opts := arena.Options{Spec: testSpec(4)}
			const workers, rounds = 4, 200
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			var removed [workers]int
			for w := range workers {
				wg.Go(func() {
					for range rounds {
						s, err := arena.OpenOrCreate(context.Background(), loc, opts)
						if err != nil {
							errs <- err
							return
						}
						if s.State().String() != "ready" {
							errs <- errors.New("opened a segment in state " + s.State().String())
						}
						rm, err := s.CloseLast()
						if err != nil {
							errs <- err
							return
						}
						if rm {
							removed[w]++
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			n := 0
			for _, r := range removed {
				n += r
			}
			if n == 0 {
				t.Error("no close removed the segment")
			}
			if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("after every worker closed: %v, want ErrNotFound", err)
			}
			t.Logf("%d removals in %d rounds", n, workers*rounds)
		})
	}
}
