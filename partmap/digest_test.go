package partmap

import (
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t *testing.T, s string) Digest {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	d, err := ParseDigest(b)
	if err != nil {
		t.Fatalf("ParseDigest: %v", err)
	}
	return d
}

// TestStringKeyKAT checks the documented example key ("test", "demo",
// "myTestKey") against the digest the Aerospike Node.js example prints.
func TestStringKeyKAT(t *testing.T) {
	want := Digest{149, 186, 200, 254, 138, 5, 9, 52, 115, 70, 1, 194, 131, 184, 51, 95, 232, 241, 179, 74}
	got := StringKeyDigest("demo", "myTestKey")
	if got != want {
		t.Fatalf("digest = %v, want %v", got, want)
	}
	if pid := got.PartitionID(); pid != 2709 {
		t.Fatalf("partition = %d, want 2709", pid)
	}
}

// The expected values below were produced by the official Go client
// (github.com/aerospike/aerospike-client-go/v8 v8.5.0, as.NewKey(...).Digest()
// and Key.PartitionId()); the interop module re-checks them against the live
// client for many more keys.
func TestDigestKATs(t *testing.T) {
	cases := []struct {
		name string
		got  Digest
		want string
		pid  uint32
	}{
		{"string/empty set", StringKeyDigest("", "myTestKey"), "1de7f9d24893c77713a9baab200f7cbc2a6a0739", 1821},
		{"string/empty key", StringKeyDigest("demo", ""), "6253653507ba82c3f57c87af2f86d39033149e0c", 866},
		{"int/1", IntKeyDigest("demo", 1), "b7f4b83889e2da67de683e1df6919a1eacc446c8", 1207},
		{"int/1 empty set", IntKeyDigest("", 1), "a443f05d05d962202b59abb402afae1737dbf66a", 932},
		{"int/-1", IntKeyDigest("demo", -1), "e9d49a24c3debdc5a6d551d3e7087999a263bb97", 1257},
		{"int/42", IntKeyDigest("demo", 42), "cf5a1365effa4dc53333f2166d103358f8711096", 2767},
		{"int/2^62", IntKeyDigest("demo", 1<<62), "4062c303a96f58334f8ce40b12abc5403dd38590", 576},
		{"bytes/123", BytesKeyDigest("demo", []byte{1, 2, 3}), "ff31c926fbef445648ce63ca72a698a5473425c1", 511},
		{"bytes/123 empty set", BytesKeyDigest("", []byte{1, 2, 3}), "140e190b92781152349a3c6f2270ff3fb61a297b", 3604},
		{"bytes/empty", BytesKeyDigest("demo", nil), "ba6e293c8560135577bdfacf15ad7d2b5fc3694f", 3770},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := mustHex(t, c.want)
			if c.got != want {
				t.Fatalf("digest = %s, want %s", c.got, want)
			}
			if pid := c.got.PartitionID(); pid != c.pid {
				t.Fatalf("partition = %d, want %d", pid, c.pid)
			}
		})
	}
}

// A string key and a bytes key with the same bytes must differ: the particle
// type byte is part of the hash.
func TestParticleTypeIsHashed(t *testing.T) {
	if StringKeyDigest("s", "abc") == BytesKeyDigest("s", []byte("abc")) {
		t.Fatal("string and bytes keys hash the same")
	}
}

func TestPartitionIDMasksTo12Bits(t *testing.T) {
	var d Digest
	d[0], d[1] = 0xff, 0xff
	if got := d.PartitionID(); got != 4095 {
		t.Fatalf("PartitionID = %d, want 4095", got)
	}
	d[0], d[1] = 0x01, 0x10 // 0x1001 -> 1
	if got := d.PartitionID(); got != 1 {
		t.Fatalf("PartitionID = %d, want 1", got)
	}
}

func TestDigestForPartition(t *testing.T) {
	for _, pid := range []uint32{0, 1, 255, 256, 2709, Partitions - 1} {
		d, err := DigestForPartition(pid)
		if err != nil {
			t.Fatalf("DigestForPartition(%d): %v", pid, err)
		}
		if got := d.PartitionID(); got != pid {
			t.Fatalf("PartitionID = %d, want %d", got, pid)
		}
	}
	if _, err := DigestForPartition(Partitions); !errors.Is(err, ErrPartitionOutOfRange) {
		t.Fatalf("err = %v, want ErrPartitionOutOfRange", err)
	}
}

func TestParseDigest(t *testing.T) {
	if _, err := ParseDigest(make([]byte, 19)); !errors.Is(err, ErrDigestLength) {
		t.Fatalf("err = %v, want ErrDigestLength", err)
	}
	d := StringKeyDigest("demo", "myTestKey")
	got, err := ParseDigest(d[:])
	if err != nil || got != d {
		t.Fatalf("round trip = %v, %v", got, err)
	}
	if s := d.String(); s != "95bac8fe8a050934734601c283b8335fe8f1b34a" {
		t.Fatalf("String = %s", s)
	}
}

func BenchmarkStringKeyDigest(b *testing.B) {
	for b.Loop() {
		_ = StringKeyDigest("demo", "myTestKey")
	}
}
