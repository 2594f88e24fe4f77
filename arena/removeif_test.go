package arena_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/layout"
)

// removeIfBackends are the locations RemoveIf is tested on: a fresh SysV
// key, a file in a temporary directory and a heap name.
func removeIfBackends(t *testing.T) map[string]arena.Location {
	return map[string]arena.Location{
		"sysv": arena.SysV(arenatest.SysVKey(t)),
		"file": arena.File(filepath.Join(t.TempDir(), "shmkit.removeif")),
		"heap": arena.NewHeapStore().At("removeif"),
	}
}

// createMarked creates a segment at loc whose data word 0 is mark, so
// that two segments created at one location can be told apart.
func createMarked(t *testing.T, loc arena.Location, mark uint64) {
	t.Helper()
	seg, err := arena.Create(context.Background(), loc, arena.Options{Spec: testSpec(16), Init: func(s *arena.Segment) error {
		off, _, err := s.Section("data")
		if err != nil {
			return err
		}
		s.Store64(off, mark)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arena.Remove(loc, arena.RemoveOptions{Force: true}) })
	if err := seg.Close(); err != nil {
		t.Fatal(err)
	}
}

// markOf returns the mark of the segment at loc (ok false: none there).
func markOf(t *testing.T, loc arena.Location) (uint64, bool) {
	t.Helper()
	seg, err := arena.Inspect(loc)
	if errors.Is(err, arena.ErrNotFound) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	off, _, err := seg.Section("data")
	if err != nil {
		t.Fatal(err)
	}
	return seg.Load64(off), true
}

// TestRemoveIf: the condition sees the segment's header; a segment it
// declines stays; one it accepts is removed; and when another process
// removes the checked segment and creates a new one at the same location
// between the check and the removal, RemoveIf leaves the new one in
// place (reporting the checked one gone). The negative control does the
// same with a check followed by Remove, which deletes the new segment.
func TestRemoveIf(t *testing.T) {
	for name, loc := range removeIfBackends(t) {
		t.Run(name, func(t *testing.T) {
			createMarked(t, loc, 1)
			removed, err := arena.RemoveIf(loc, arena.RemoveOptions{}, func(seg *arena.Segment, hdrErr error) bool {
				if hdrErr != nil || seg.Header().Kind != layout.KindTest {
					t.Errorf("condition shown header %+v, %v", seg.Header(), hdrErr)
				}
				return false
			})
			if err != nil || removed {
				t.Fatalf("declined: removed %v, %v", removed, err)
			}
			if m, ok := markOf(t, loc); !ok || m != 1 {
				t.Fatalf("declined segment: mark %d, present %v", m, ok)
			}

			// Replaced between the check and the removal.
			replace := func(*arena.Segment, error) bool {
				if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
					t.Fatal(err)
				}
				createMarked(t, loc, 2)
				return true
			}
			removed, err = arena.RemoveIf(loc, arena.RemoveOptions{Force: true}, replace)
			if removed && err == nil {
				// SysV: the checked shmid was removed again (it already
				// was); the new segment has another shmid.
				t.Logf("RemoveIf removed the checked segment (already marked removed)")
			} else if !errors.Is(err, arena.ErrNotFound) {
				t.Fatalf("replaced meanwhile: removed %v, %v; want the checked one reported gone", removed, err)
			}
			if m, ok := markOf(t, loc); !ok || m != 2 {
				t.Fatalf("the segment created meanwhile: mark %d, present %v; want it left in place", m, ok)
			}
			if ents, _ := os.ReadDir(dirOf(loc)); len(ents) > 1 {
				t.Fatalf("files left beside the segment: %v", ents)
			}

			// Accepted: removed.
			removed, err = arena.RemoveIf(loc, arena.RemoveOptions{}, func(*arena.Segment, error) bool { return true })
			if err != nil || !removed {
				t.Fatalf("accepted: removed %v, %v", removed, err)
			}
			if _, ok := markOf(t, loc); ok {
				t.Fatal("the accepted segment is still there")
			}
			if _, err := arena.RemoveIf(loc, arena.RemoveOptions{}, func(*arena.Segment, error) bool { return true }); !errors.Is(err, arena.ErrNotFound) {
				t.Fatalf("missing segment: %v, want ErrNotFound", err)
			}

			// Negative control: check, then Remove by location.
			createMarked(t, loc, 3)
			if _, ok := markOf(t, loc); !ok {
				t.Fatal("no segment to check")
			}
			replace(nil, nil)
			if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if _, ok := markOf(t, loc); ok {
				t.Fatal("negative control: Remove after a check left the new segment: the race above would not be caught")
			}
		})
	}
}

// TestRemoveIfUnreadable: a segment whose header does not read (a file of
// garbage) is shown to the condition with the header's error, and
// removed with Force if the condition accepts it.
func TestRemoveIfUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shmkit.garbage")
	if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	var shown error
	removed, err := arena.RemoveIf(arena.File(path), arena.RemoveOptions{Force: true}, func(seg *arena.Segment, hdrErr error) bool {
		shown = hdrErr
		return seg.Header() == nil
	})
	if shown == nil || err != nil || !removed {
		t.Fatalf("garbage file: header error %v, removed %v, %v", shown, removed, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("garbage file still there: %v", err)
	}
	// A symlink at the path is refused, and its target untouched.
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if removed, err := arena.RemoveIf(arena.File(path), arena.RemoveOptions{Force: true}, func(*arena.Segment, error) bool { return true }); err == nil || removed {
		t.Fatalf("symlink: removed %v, %v; want a refusal", removed, err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("symlink target: %v", err)
	}
}

func dirOf(loc arena.Location) string {
	if s := loc.String(); len(s) > 5 && s[:5] == "file " {
		return filepath.Dir(s[5:])
	}
	return ""
}
