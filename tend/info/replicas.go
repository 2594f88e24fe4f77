package info

import (
	"encoding/base64"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Partitions is the number of partitions of every namespace. It equals
// partmap.Partitions; it is repeated here so that the protocol layer does
// not depend on the shared-memory packages partmap builds on.
const Partitions = 4096

// BitmapSize is the size in bytes of one partition ownership bitmap: one
// bit per partition.
const BitmapSize = Partitions / 8

// MaxNamespaceLen is the longest namespace name accepted (the server's
// limit is 31 bytes).
const MaxNamespaceLen = 31

// MaxReplicaCount is the largest replica count accepted in a replicas
// value (the server's replication-factor limit).
const MaxReplicaCount = 256

// encodedBitmapLen is the length of a padded base64 bitmap (684).
const encodedBitmapLen = (BitmapSize + 2) / 3 * 4

// Bitmap is one partition ownership bitmap: partition p is set when byte
// p>>3 has bit 0x80>>(p&7).
type Bitmap [BitmapSize]byte

// Has reports whether partition pid is set; false for pid >= 4096.
func (b *Bitmap) Has(pid uint32) bool {
	if pid >= Partitions {
		return false
	}
	return b[pid>>3]&(0x80>>(pid&7)) != 0
}

// Set marks partition pid; pid >= 4096 is ignored.
func (b *Bitmap) Set(pid uint32) {
	if pid < Partitions {
		b[pid>>3] |= 0x80 >> (pid & 7)
	}
}

// Clear unmarks partition pid; pid >= 4096 is ignored.
func (b *Bitmap) Clear(pid uint32) {
	if pid < Partitions {
		b[pid>>3] &^= 0x80 >> (pid & 7)
	}
}

// Count returns the number of partitions set.
func (b *Bitmap) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Base64 returns the bitmap in the server's encoding (standard base64 with
// padding).
func (b *Bitmap) Base64() string {
	return base64.StdEncoding.EncodeToString(b[:])
}

// NamespaceReplicas is one namespace entry of a "replicas" value: which
// partitions the answering node holds, per replica index.
type NamespaceReplicas struct {
	// Namespace is the namespace name (1 to 31 bytes).
	Namespace string
	// Regime is the node's rebalance regime for the namespace; 0 for
	// namespaces that are not strong-consistency (and for "replicas-all").
	// When several nodes claim a partition, the claim with the higher
	// regime wins.
	Regime uint32
	// ReplicaCount is the number of replica indexes (1 = master only); it
	// equals len(Bitmaps).
	ReplicaCount int
	// Bitmaps[i] marks the partitions this node holds as replica i
	// (0 = master, 1 = first prole, ...).
	Bitmaps []Bitmap
}

// ParseReplicas parses the value of the "replicas" command, sent by
// servers since 4.x and requested by current clients:
//
//	value := [entry {";" entry}]
//	entry := namespace ":" regime "," count {"," base64-bitmap}
//
// with exactly count bitmaps, each decoding to BitmapSize bytes. A
// trailing ';' is accepted.
func ParseReplicas(v string) ([]NamespaceReplicas, error) {
	return parseReplicas(CmdReplicas, v, true)
}

// ParseReplicasAll parses the older "replicas-all" value, which has no
// regime field ("namespace:count,bitmap,..."); Regime is 0 in the result.
func ParseReplicasAll(v string) ([]NamespaceReplicas, error) {
	return parseReplicas(CmdReplicasAll, v, false)
}

func parseReplicas(cmd, v string, withRegime bool) ([]NamespaceReplicas, error) {
	if err := CheckServerError(cmd, v); err != nil {
		return nil, err
	}
	var out []NamespaceReplicas
	seen := make(map[string]bool)
	sc := scanner{cmd: cmd, s: v}
	for !sc.eof() {
		nsStart := sc.pos
		ns := sc.until(":;,")
		if sc.eof() {
			return nil, parseErr(ErrTruncated, cmd, "namespace", nsStart, "namespace %q is not followed by ':'", truncate(ns, 40))
		}
		if sc.s[sc.pos] != ':' {
			return nil, parseErr(ErrMalformed, cmd, "namespace", sc.pos, "found %q where ':' was expected after namespace %q", sc.s[sc.pos], truncate(ns, 40))
		}
		if ns == "" || len(ns) > MaxNamespaceLen {
			return nil, parseErr(ErrMalformed, cmd, "namespace", nsStart, "namespace name %q must be 1 to %d bytes", truncate(ns, 40), MaxNamespaceLen)
		}
		if seen[ns] {
			return nil, parseErr(ErrMalformed, cmd, "namespace", nsStart, "namespace %q listed twice", ns)
		}
		seen[ns] = true
		sc.pos++ // ':'

		entry := NamespaceReplicas{Namespace: ns}
		if withRegime {
			start := sc.pos
			r, err := parseUint(cmd, "regime", start, sc.until(",;"), math.MaxUint32)
			if err != nil {
				return nil, err
			}
			entry.Regime = uint32(r)
			if err := sc.expect(',', "regime"); err != nil {
				return nil, err
			}
		}
		countStart := sc.pos
		count, err := parseUint(cmd, "replica count", countStart, sc.until(",;"), MaxReplicaCount)
		if err != nil {
			return nil, err
		}
		if count < 1 {
			return nil, parseErr(ErrOutOfRange, cmd, "replica count", countStart, "namespace %q has replica count 0", ns)
		}
		entry.ReplicaCount = int(count)
		entry.Bitmaps = make([]Bitmap, count)
		for i := range entry.Bitmaps {
			field := "bitmap " + strconv.Itoa(i)
			if sc.eof() || sc.s[sc.pos] == ';' {
				return nil, parseErr(ErrTruncated, cmd, field, sc.pos, "namespace %q announces %d bitmaps but has %d", ns, count, i)
			}
			sc.pos++ // ','
			start := sc.pos
			if err := decodeBitmap(cmd, field, start, sc.until(",;"), &entry.Bitmaps[i]); err != nil {
				return nil, err
			}
		}
		if !sc.eof() {
			if sc.s[sc.pos] == ',' {
				return nil, parseErr(ErrMalformed, cmd, "bitmap "+strconv.Itoa(int(count)), sc.pos, "namespace %q has more bitmaps than its replica count %d", ns, count)
			}
			sc.pos++ // ';'
		}
		out = append(out, entry)
	}
	return out, nil
}

func decodeBitmap(cmd, field string, off int, tok string, dst *Bitmap) error {
	if tok == "" {
		return parseErr(ErrMalformed, cmd, field, off, "empty bitmap")
	}
	if len(tok) != encodedBitmapLen {
		return parseErr(ErrMalformed, cmd, field, off, "bitmap is %d base64 characters, want %d (%d bytes)", len(tok), encodedBitmapLen, BitmapSize)
	}
	// 684 characters without padding decode to 513 bytes, and Decode
	// writes past a destination that is too small: decode into room for
	// DecodedLen, then check the size.
	var buf [(encodedBitmapLen / 4) * 3]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(tok))
	if err != nil {
		return parseErr(ErrMalformed, cmd, field, off, "bad base64: %v", err)
	}
	if n != BitmapSize {
		return parseErr(ErrMalformed, cmd, field, off, "bitmap decodes to %d bytes, want %d", n, BitmapSize)
	}
	copy(dst[:], buf[:n])
	return nil
}

// FormatReplicas renders namespaces in the "replicas" format (the inverse
// of ParseReplicas). The replica count written is len(Bitmaps).
func FormatReplicas(nss []NamespaceReplicas) string {
	return formatReplicas(nss, true)
}

// FormatReplicasAll renders namespaces in the older "replicas-all" format,
// without regimes.
func FormatReplicasAll(nss []NamespaceReplicas) string {
	return formatReplicas(nss, false)
}

func formatReplicas(nss []NamespaceReplicas, withRegime bool) string {
	var b strings.Builder
	for i, ns := range nss {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(ns.Namespace)
		b.WriteByte(':')
		if withRegime {
			b.WriteString(strconv.FormatUint(uint64(ns.Regime), 10))
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(len(ns.Bitmaps)))
		for j := range ns.Bitmaps {
			b.WriteByte(',')
			b.WriteString(ns.Bitmaps[j].Base64())
		}
	}
	return b.String()
}
