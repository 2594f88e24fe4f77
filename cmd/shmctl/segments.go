package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// parseTarget turns a KEY|PATH argument into a location: a SysV key when it
// parses as one (0x… hex or decimal) and names no existing file, otherwise
// a file path (made absolute, so that messages and index stores agree).
func parseTarget(s string) (arena.Location, error) {
	if s == "" {
		return nil, errors.New("empty segment name")
	}
	if !strings.ContainsRune(s, '/') {
		if k, err := arena.ParseKey(s); err == nil {
			return arena.SysV(k), nil
		}
	}
	p, err := filepath.Abs(s)
	if err != nil {
		return nil, err
	}
	return arena.File(p), nil
}

// aerospikeKey reports whether s names a SysV key in one of Aerospike's
// ranges (see arena.Origin), which shmctl never reads or removes.
func aerospikeKey(s string) (arena.Key, bool) {
	if strings.ContainsRune(s, '/') {
		return 0, false
	}
	k, err := arena.ParseKey(s)
	if err != nil {
		return 0, false
	}
	o := arena.OriginOf(k)
	return k, o.Foreign() && o != arena.OriginOther
}

// segmentKind names what a segment holds, more finely than layout.Kind:
// cluster-view (partmap), index-main or index-stage, pool, pool-stage,
// lease, test; for foreign segments the origin (aerospike-…, foreign).
type segmentKind string

// kindOf classifies a listed segment.
func kindOf(l *arena.Listed) segmentKind {
	if l.Origin.Foreign() {
		return segmentKind(l.Origin.String())
	}
	return kindOfHeader(l.Header)
}

// kindOfHeader classifies a header (nil or not ready: unknown).
func kindOfHeader(h *layout.Header) segmentKind {
	if h == nil || h.Kind == 0 {
		return "unknown"
	}
	switch h.Kind {
	case layout.KindCluster:
		return "cluster-view"
	case layout.KindIndex:
		if b, _ := h.Field("block"); b != 0 {
			return "index-stage"
		}
		return "index-main"
	case layout.KindPool:
		return "pool"
	case layout.KindPoolStage:
		return "pool-stage"
	case layout.KindLease:
		return "lease"
	case layout.KindTest:
		return "test"
	}
	return segmentKind(h.Kind.String())
}

// stateOf describes a listed segment's state.
func stateOf(l *arena.Listed) string {
	switch {
	case l.Origin.Foreign():
		return "-"
	case l.Header != nil && errors.Is(l.HeaderErr, layout.ErrNotReady):
		return fmt.Sprintf("%s(pid %d)", l.Header.State, l.Header.StatePID)
	case l.Header != nil && l.HeaderErr == nil:
		return l.Header.State.String()
	case l.HeaderErr != nil:
		return "unreadable"
	}
	return "-"
}

// userName returns the login name of uid, or the number.
func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// sizeText formats a byte count for tables (KiB, MiB, GiB; exact below 1 KiB).
func sizeText(n uint64) string {
	const k = 1024
	switch {
	case n >= k*k*k:
		return fmt.Sprintf("%.1fG", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1fM", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.1fK", float64(n)/k)
	}
	return strconv.FormatUint(n, 10)
}

func timeText(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "-"
	}
	return t.Local().Format("2006-01-02T15:04:05")
}

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errText is err's message, or "".
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// diagnose says in a sentence what an error attaching or reading a
// segment's header means for an operator.
func diagnose(err error) string {
	switch {
	case errors.Is(err, arena.ErrNotFound):
		return "no such segment"
	case errors.Is(err, arena.ErrReservedKey):
		return "the key is in a range Aerospike uses: not shmkit's, shmctl leaves it alone"
	case errors.Is(err, layout.ErrNotOurs):
		return "not a shmkit segment (no shmkit magic): another program's, or never initialized"
	case errors.Is(err, layout.ErrNotReady):
		return "being initialized, or its initializer died before finishing (a waiter re-initializes it)"
	case errors.Is(err, layout.ErrChecksum):
		return "damaged: the header checksum does not match (torn or overwritten header); remove it and restart its users"
	case errors.Is(err, layout.ErrCorrupt), errors.Is(err, layout.ErrTruncated):
		return "damaged: the header is inconsistent; remove it and restart its users"
	case errors.Is(err, layout.ErrVersion):
		return "written by an incompatible shmkit format version"
	case errors.Is(err, layout.ErrByteOrder), errors.Is(err, layout.ErrPlatform):
		return "written on another kind of machine (byte order, word or page size)"
	case errors.Is(err, arena.ErrPermission):
		return "permission denied: run as its owner (or root)"
	case errors.Is(err, arena.ErrSymlink), errors.Is(err, arena.ErrNotRegular):
		return "not a regular single-link file: shmctl never follows links"
	}
	return "cannot be read"
}

// exitFor maps an error attaching a target to an exit code: a target
// that does not exist or cannot be accessed is a failure, one that is not
// shmkit's or is damaged is a problem found.
func exitFor(err error) int {
	switch {
	case errors.Is(err, arena.ErrNotFound), errors.Is(err, arena.ErrPermission):
		return exitFailed
	case errors.Is(err, arena.ErrReservedKey):
		return exitRefused
	}
	return exitProblems
}
