package arena_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/layout"
)

func TestOriginOf(t *testing.T) {
	for _, c := range []struct {
		key  arena.Key
		want arena.Origin
	}{
		{arena.MakeKey(arena.ClassIndex, 3), arena.OriginShmkit},
		{0xA5000000, arena.OriginAerospikeClient},
		{0xA8000001, arena.OriginAerospikeClient},
		{0xAC123456, arena.OriginAerospikeClient},
		{0xAE001100, arena.OriginAerospikeIndex},
		{0xA2000000, arena.OriginAerospikeSIndex},
		{0xAD000100, arena.OriginAerospikeData},
		{0xA4000000, arena.OriginOther},
		{0xAF000000, arena.OriginOther},
		{0x54000001, arena.OriginOther},
	} {
		if got := arena.OriginOf(c.key); got != c.want {
			t.Errorf("OriginOf(%s) = %s, want %s", c.key, got, c.want)
		}
		if got := arena.OriginOf(c.key).Foreign(); got != (c.want != arena.OriginShmkit) {
			t.Errorf("OriginOf(%s).Foreign() = %v", c.key, got)
		}
	}
}

// TestScan lists a SysV segment (attached), a file segment in a directory
// of the test (named like an index block, not shmkit.*), a file that is
// not a segment (left out), and a raw foreign SysV segment (only with
// Foreign).
func TestScan(t *testing.T) {
	ctx := ctxT(t)
	k := arenatest.SysVKey(t)
	spec := layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "scan", Value: 7}},
		Sections: []layout.SectionSpec{{Name: "data", Size: 4096}}}
	seg, err := arena.Create(ctx, arena.SysV(k), arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	dir := t.TempDir()
	fpath := filepath.Join(dir, "index-i0-n0.b000")
	fseg, err := arena.Create(ctx, arena.File(fpath), arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if !fseg.SetState(layout.StateReady, layout.StateClean) {
		t.Fatal("SetState clean failed")
	}
	fseg.Close()
	defer arena.Remove(arena.File(fpath), arena.RemoveOptions{Force: true})
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	fk, _ := arenatest.ForeignSysV(t, 4096)

	find := func(ls []arena.Listed, loc string) *arena.Listed {
		for i := range ls {
			if ls[i].Location == loc {
				return &ls[i]
			}
		}
		return nil
	}
	ls, err := arena.Scan(arena.ScanOptions{Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	sv := find(ls, arena.SysV(k).String())
	if sv == nil {
		t.Fatalf("Scan did not find %s in %d entries", arena.SysV(k), len(ls))
	}
	if sv.Origin != arena.OriginShmkit || sv.Header == nil || sv.HeaderErr != nil || sv.Header.Kind != layout.KindTest ||
		sv.Header.State != layout.StateReady || sv.Attached != 1 || sv.Key != k || sv.Size < 4096+layout.HeaderSize {
		t.Errorf("SysV entry: %+v (header %+v, err %v)", sv.Stat, sv.Header, sv.HeaderErr)
	}
	fe := find(ls, arena.File(fpath).String())
	if fe == nil || fe.Header == nil || fe.Header.State != layout.StateClean || fe.Attached != 0 || fe.Path != fpath {
		t.Errorf("file entry: %+v", fe)
	}
	if e := find(ls, arena.File(filepath.Join(dir, "notes.txt")).String()); e != nil {
		t.Errorf("a plain file listed: %+v", e)
	}
	if e := find(ls, arena.SysV(fk).String()); e != nil {
		t.Errorf("foreign segment listed without Foreign: %+v", e)
	}

	ls, err = arena.Scan(arena.ScanOptions{Dirs: []string{dir}, Foreign: true})
	if err != nil {
		t.Fatal(err)
	}
	fo := find(ls, arena.SysV(fk).String())
	if fo == nil || fo.Origin != arena.OriginOther || !fo.Origin.Foreign() || fo.Header != nil || fo.Size != 4096 {
		t.Errorf("foreign entry: %+v", fo)
	}
	// A damaged header is listed with the reason.
	b, _ := os.ReadFile(fpath)
	b[layout.OffFields] ^= 1
	if err := os.WriteFile(filepath.Join(dir, "shmkit.damaged"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	ls, _ = arena.Scan(arena.ScanOptions{Dirs: []string{dir}})
	d := find(ls, arena.File(filepath.Join(dir, "shmkit.damaged")).String())
	if d == nil || d.Header != nil || !errors.Is(d.HeaderErr, layout.ErrChecksum) {
		t.Errorf("damaged entry: %+v", d)
	}
	if _, err := arena.Scan(arena.ScanOptions{Dirs: []string{filepath.Join(dir, "absent")}}); err == nil {
		t.Error("Scan of a missing directory: no error")
	}
}
