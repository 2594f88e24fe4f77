package backup

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// BigEnv opts in to TestBigSegmentRoundTrip, which needs about 9 GiB of
// memory and 5 GiB of disk.
const BigEnv = "SHMKIT_BIG_BACKUP"

// TestBigSegmentRoundTrip: a SysV segment larger than 4 GiB, filled with a
// position-dependent pattern, round-trips bit-exact with and without
// compression; the bytes beyond 4 GiB are checked explicitly (ASMT passed
// sizes to zlib and crc32 as 32-bit values). Opt-in: SHMKIT_BIG_BACKUP=1,
// never under -short.
func TestBigSegmentRoundTrip(t *testing.T) {
	if testing.Short() || os.Getenv(BigEnv) != "1" {
		t.Skipf("set %s=1 (and not -short) to run: needs ~9 GiB of memory and 5 GiB of disk", BigEnv)
	}
	const size = 4<<30 + 3<<20 + 4096 + 40 // the last chunk partial, not a power of two
	key := testBase(t)
	loc := arena.SysV(key)
	patternSegment(t, loc, size, 0x5eed)
	head := snapshotRange(t, loc, 0, 1<<20)
	for _, c := range compressions() {
		t.Run(c.String(), func(t *testing.T) {
			dir := dirOf(t)
			res, err := Backup(ctx, Source{Keys: []arena.Key{key}}, dir, Options{Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes <= 1<<32 {
				t.Fatalf("backed up %d bytes, want more than 4 GiB", res.Bytes)
			}
			t.Logf("%s: %d bytes stored as %d in %v", c, res.Bytes, res.Stored, res.Duration)
			removeAll(t, loc)
			if _, err := Restore(ctx, dir, Options{}); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(dir)
			seg, err := arena.Inspect(loc)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			off, n, err := seg.Section("data")
			if err != nil {
				t.Fatal(err)
			}
			all, _ := seg.QuiescentBytes(0, seg.Len())
			if !bytes.Equal(all[:len(head)], head) {
				t.Errorf("header region differs")
			}
			data := all[off : uint64(off)+n]
			bad := 0
			beyond := 0
			for i := 0; i+8 <= len(data); i += 8 {
				pos := uint64(off) + uint64(i)
				if binary.LittleEndian.Uint64(data[i:]) != mix(pos, 0x5eed) {
					if bad++; bad < 5 {
						t.Errorf("word at %d differs", pos)
					}
				}
				if pos >= 1<<32 {
					beyond++
				}
			}
			if bad > 0 || beyond < (3<<20)/8 {
				t.Fatalf("%d words differ; %d words beyond 4 GiB checked", bad, beyond)
			}
		})
	}
}
