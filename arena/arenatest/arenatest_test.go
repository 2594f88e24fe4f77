package arenatest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/layout"
)

func TestSysVKeyIsFreeAndRemovedAtCleanup(t *testing.T) {
	var key arena.Key
	t.Run("use", func(t *testing.T) {
		key = arenatest.SysVKey(t)
		if !key.IsShmkit() {
			t.Fatalf("key %s is not a shmkit key", key)
		}
		seg, err := arena.Create(context.Background(), arena.SysV(key), arena.Options{
			Spec: layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "x", Size: 8}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
	})
	if _, err := arena.StatOf(arena.SysV(key)); !errors.Is(err, arena.ErrNotFound) {
		t.Fatalf("segment at %s survived the subtest's cleanup: %v", key, err)
	}
}
