package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/index"
)

// sysvBlocks is how many blocks (main segment and stages) per namespace
// the SysV test checks and removes.
const sysvBlocks = 4

// sysvBase returns a base key of the test class for the indexes of two
// namespaces (base and base+0x100, blocks 0 to sysvBlocks-1) that no
// segment uses now, and removes whatever is at those keys when the test
// ends, failing the test if a segment is left behind.
func sysvBase(t *testing.T) arena.Key {
	t.Helper()
	var keys []arena.Key
	for ns := range 2 {
		for b := range sysvBlocks {
			keys = append(keys, arena.Key(ns)<<8|arena.Key(b))
		}
	}
	return arenatest.SysVKeySet(t, 0xfe0, keys...)
}

// TestSysVSegments runs the server on SysV segments (the default store,
// here at test keys): a clean stop restarts warm, a SIGKILL after writes
// restarts cold, and the contents hold.
func TestSysVSegments(t *testing.T) {
	in := newInstance(t)
	in.shm = "" // no -shm-dir
	base := sysvBase(t)
	args := in.args()
	for i := range args {
		if args[i] == "-shm-dir" {
			args = append(args[:i:i], args[i+2:]...)
			break
		}
	}
	in.argsOverride = append(args, "-sysv-base", fmt.Sprint(uint32(base)))
	m := newModel()
	p := in.mustStart("")
	p.expectStart(t, "cold", "segments missing")
	if !strings.Contains(p.stderr.String(), `"store":"sysv"`) {
		t.Fatalf("the index is not on SysV segments: %s", p.stderr)
	}
	if err := workload(m, p.client(), "k", 29, 300); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	p = in.mustStart("")
	p.expectStart(t, "warm", "")
	m.check(t, p.client())
	if err := workload(m, p.client(), "k", 29, 100); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Kill()
	p.waitKilled(t)
	// The namespaces' main segments (num 0 and 1, at base + num<<8), as
	// shmctl check sees them.
	for num := range 2 {
		if err := index.CheckAt(context.Background(), arena.SysV(base+arena.Key(num)<<8)); err != nil && !errors.Is(err, index.ErrInterrupted) {
			t.Errorf("check of namespace %d's index after the kill: %v", num, err)
		}
	}
	p = in.mustStart("")
	p.expectStart(t, "cold", "unclean shutdown")
	m.check(t, p.client())
	p.stop(t)
}
