package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/lease"
)

// TestCheckKinds checks undamaged segments of every kind (exit 0), then
// plants damage in each and wants check to name it (exit 1): a partition
// entry naming an empty node slot, a linked pool element on the free list,
// an index partition count that disagrees with the entries.
func TestCheckKinds(t *testing.T) {
	k, m, l := clusterView(t)
	dir := t.TempDir()
	ppath, _ := filePool(t, dir)
	idir := t.TempDir()
	fileIndex(t, idir, 150) // 3 stages of 64
	imain := filepath.Join(idir, "index-i2-n1.b000")

	code, out, errs := shmctl(t, "check", k.String(), ppath, "--dir", idir)
	if code != exitOK || !strings.Contains(out, "ok       "+arena.File(imain).String()+" (index-main)") || !strings.Contains(out, "skipped") {
		t.Fatalf("check of undamaged segments: exit %d %s\n%s", code, errs, out)
	}

	seg := m.Segment()
	parts, _, err := seg.Section("partitions")
	if err != nil {
		t.Fatal(err)
	}
	seg.Store64(parts+8*77, lease.PackFenced(l.Epoch(), 3)) // slot 3 holds no node
	code, out, _ = shmctl(t, "check", k.String())
	if code != exitProblems || !strings.Contains(out, "partition 77: replica 0 names node slot 3, which holds no published node") {
		t.Errorf("check of a damaged cluster view: exit %d\n%s", code, out)
	}

	pseg, err := arena.Inspect(arena.File(ppath))
	if err != nil {
		t.Fatal(err)
	}
	ctl, _, _ := pseg.Section("pool")
	pseg.Store64(ctl, 7<<32|1) // free-list head: tag 7, element 0:0 (linked)
	pseg.Close()
	code, out, _ = shmctl(t, "check", ppath, "-json")
	var rs []checkResult
	if err := json.Unmarshal([]byte(out), &rs); err != nil || code != exitProblems || len(rs) != 1 || rs[0].Status != "problems" ||
		!strings.Contains(strings.Join(rs[0].Problems, "\n"), "element 0:0 is linked, not free") {
		t.Errorf("check -json of a damaged pool: exit %d, %v, %+v", code, err, rs)
	}

	iseg, err := arena.Inspect(arena.File(imain))
	if err != nil {
		t.Fatal(err)
	}
	ip, _, _ := iseg.Section("parts")
	// A writer killed mid-update in partition 1: its first sprig's
	// version odd (bit 45 of the word; 2 sprigs a partition), the
	// partition's count one ahead. Not damage: ok, unclean.
	isp, _, _ := iseg.Section("sprigs")
	iseg.Add64(isp+8*2, 1<<45)
	iseg.Add64(ip+32, 1) // partition 1 (4 words a partition): its count
	code, out, _ = shmctl(t, "check", "--dir", idir)
	if code != exitOK || !strings.Contains(out, "ok       "+arena.File(imain).String()+" (index-main): unclean: a writer did not finish 1 updates (1 partitions hold an odd sprig") {
		t.Errorf("check of an index with an interrupted update: exit %d\n%s", code, out)
	}
	iseg.Add64(ip, 5) // partition 0's count: damage
	iseg.Close()
	code, out, _ = shmctl(t, "check", "--dir", idir)
	if code != exitProblems || !strings.Contains(out, "PROBLEMS "+arena.File(imain).String()) {
		t.Errorf("check of a damaged index: exit %d\n%s", code, out)
	}

	// Not shmkit's, missing, usage.
	fk, _ := arenatest.ForeignSysV(t, 4096)
	if code, out, _ := shmctl(t, "check", fk.String()); code != exitProblems || !strings.Contains(out, "not shmkit's") {
		t.Errorf("check of a foreign segment: exit %d\n%s", code, out)
	}
	if code, _, _ := shmctl(t, "check", filepath.Join(dir, "absent")); code != exitFailed {
		t.Errorf("check of a missing file: exit %d", code)
	}
	if code, _, _ := shmctl(t, "check"); code != exitUsage {
		t.Errorf("check without targets: exit %d", code)
	}
	if code, _, _ := shmctl(t, "check", "-bogus", k.String()); code != exitUsage {
		t.Errorf("check with an unknown flag: exit %d", code)
	}
}

// TestRm: attached and foreign segments are refused without --force and
// removed with it; a detached shmkit segment is removed; --prefix removes
// every matching file; Aerospike's keys are refused even with --force.
func TestRm(t *testing.T) {
	ctx := ctxT(t)
	k := arenatest.SysVKey(t)
	spec := testSpec()
	seg, err := arena.Create(ctx, arena.SysV(k), arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := shmctl(t, "rm", k.String())
	if code != exitRefused || !strings.Contains(errs, "attached by 1") {
		t.Errorf("rm of an attached segment: exit %d %s", code, errs)
	}
	seg.Close()
	code, out, _ := shmctl(t, "rm", k.String())
	if code != exitOK || !strings.Contains(out, "removed "+arena.SysV(k).String()+" (test,") {
		t.Errorf("rm: exit %d %s", code, out)
	}
	if _, err := arena.StatOf(arena.SysV(k)); err == nil {
		t.Error("segment still there after rm")
	}
	if code, _, _ := shmctl(t, "rm", k.String()); code != exitFailed {
		t.Errorf("rm of a missing segment: exit %d", code)
	}

	fk, _ := arenatest.ForeignSysV(t, 4096)
	if code, _, errs := shmctl(t, "rm", fk.String()); code != exitRefused || !strings.Contains(errs, "not shmkit's") {
		t.Errorf("rm of a foreign segment: exit %d %s", code, errs)
	}
	if code, out, _ := shmctl(t, "rm", "--force", fk.String()); code != exitOK || !strings.Contains(out, "removed") {
		t.Errorf("rm --force of a foreign segment: exit %d %s", code, out)
	}
	if code, _, errs := shmctl(t, "rm", "--force", "0xAE000100"); code != exitRefused || !strings.Contains(errs, "Aerospike's range") {
		t.Errorf("rm of an Aerospike key: exit %d %s", code, errs)
	}

	dir := t.TempDir()
	var paths []string
	for _, n := range []string{"shmkit.a", "shmkit.b"} {
		p := filepath.Join(dir, n)
		s, err := arena.Create(ctx, arena.File(p), arena.Options{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		paths = append(paths, p)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("keep me"), 0o600)
	code, out, _ = shmctl(t, "rm", "--prefix", filepath.Join(dir, "shmkit."))
	if code != exitOK || strings.Count(out, "removed") != 2 {
		t.Errorf("rm --prefix: exit %d\n%s", code, out)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still there", p)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("rm --prefix removed an unrelated file: %v", err)
	}
	// A pool's and an index's stage segments go with their main segment.
	pdir := t.TempDir()
	ppath := filepath.Join(pdir, "shmkit.pool")
	pool, err := arena.OpenPool(ctx, arena.File(ppath), arena.PoolConfig{ElemSize: 8, StageElems: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // stages 0, 1 (2 elements)
		if _, err := pool.Alloc(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pool.Close()
	code, out, errs = shmctl(t, "rm", ppath)
	if code != exitOK || !strings.Contains(out, "removed file "+ppath+".s1 (stage of") {
		t.Errorf("rm of a pool: exit %d %s\n%s", code, errs, out)
	}
	idir := t.TempDir()
	fileIndex(t, idir, 150).Close() // blocks 0, 1, 2
	code, out, errs = shmctl(t, "rm", "--prefix", filepath.Join(idir, "index-"))
	if code != exitOK || strings.Count(out, "removed") != 3 || !strings.Contains(out, "index-i2-n1.b002 (stage of") {
		t.Errorf("rm --prefix of an index: exit %d %s\n%s", code, errs, out)
	}
	if left, _ := filepath.Glob(filepath.Join(idir, "*")); len(left) != 0 {
		t.Errorf("left after rm: %v", left)
	}
	if code, _, _ := shmctl(t, "rm", "--prefix", "53"); code != exitUsage {
		t.Errorf("rm --prefix without 0x: exit %d", code)
	}
}

// TestBinary builds shmctl and runs it as an operator would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "shmctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	k, _, _ := clusterView(t)
	out, err := exec.Command(bin, "ls", "-json").Output()
	if err != nil || !strings.Contains(string(out), k.String()) {
		t.Errorf("shmctl ls -json: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "check", k.String()).Output()
	if err != nil || !strings.Contains(string(out), "0 with problems") {
		t.Errorf("shmctl check: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "rm", k.String())
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitRefused {
		t.Errorf("shmctl rm of an attached segment: %v, want exit %d", err, exitRefused)
	}
	out, err = exec.Command(bin, "help", "check").Output()
	if err != nil || !strings.Contains(string(out), "Exit codes") {
		t.Errorf("shmctl help check: %v\n%s", err, out)
	}
}
