package arena

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/layout"
)

// Origin says whose a SysV segment is, judged by its key (shmkit's prefix,
// or one of the ranges Aerospike's clients and servers use).
type Origin uint8

// Origins of a segment. Aerospike's ranges are those of its C client (the
// cluster-state segment at shm_key, whose defaults have been 0xA5000000
// to 0xA9000000 across releases: 0xA5…–0xAC… are kept for it) and of its
// Enterprise server (0xAE… primary index, 0xA2… secondary index, 0xAD…
// namespace data, each key carrying instance, namespace and stage below the
// top byte; the Aerospike Shared-Memory Tool backs up the same three).
const (
	OriginShmkit          Origin = 1 // key prefix 0x53, or a file segment with shmkit's header
	OriginAerospikeClient Origin = 2 // 0xA5…–0xAC…: a client's shared cluster state
	OriginAerospikeIndex  Origin = 3 // 0xAE…: a server's primary index arena or tree
	OriginAerospikeSIndex Origin = 4 // 0xA2…: a server's secondary index
	OriginAerospikeData   Origin = 5 // 0xAD…: a server's namespace data in shared memory
	OriginOther           Origin = 6 // any other program
)

func (o Origin) String() string {
	switch o {
	case OriginShmkit:
		return "shmkit"
	case OriginAerospikeClient:
		return "aerospike-client"
	case OriginAerospikeIndex:
		return "aerospike-primary-index"
	case OriginAerospikeSIndex:
		return "aerospike-secondary-index"
	case OriginAerospikeData:
		return "aerospike-data"
	case OriginOther:
		return "foreign"
	}
	return fmt.Sprintf("origin(%d)", uint8(o))
}

// Foreign reports whether the segment is not shmkit's.
func (o Origin) Foreign() bool { return o != OriginShmkit }

// OriginOf classifies a SysV key by its top byte (see Origin).
func OriginOf(k Key) Origin {
	switch top := k >> 24; {
	case top == KeyPrefix:
		return OriginShmkit
	case top >= 0xA5 && top <= 0xAC:
		return OriginAerospikeClient
	case top == 0xAE:
		return OriginAerospikeIndex
	case top == 0xA2:
		return OriginAerospikeSIndex
	case top == 0xAD:
		return OriginAerospikeData
	}
	return OriginOther
}

// ScanOptions configure Scan.
type ScanOptions struct {
	// Dirs are the directories searched for file segments (DefaultDir
	// when empty). In each, a regular file counts if its name starts
	// with FilePrefix or its first word is shmkit's magic (index.Dir
	// stores, for one, name their files index-i<I>-n<N>.b<block>).
	Dirs []string
	// Foreign adds every other SysV segment on the machine (Origin says
	// whose); their contents are not read.
	Foreign bool
}

// Listed is one segment found by Scan: what the kernel says (Stat), whose
// it is, and the header when it could be read.
type Listed struct {
	Stat
	Origin Origin
	// Header is the segment's header as layout.Check decoded it: complete
	// for a valid header; only State and StatePID for a segment still
	// empty or initializing (HeaderErr is then layout.ErrNotReady); nil
	// when there is no readable header.
	Header *layout.Header
	// HeaderErr says why Header is missing or partial (not read for
	// foreign segments: nil there).
	HeaderErr error
}

// Scan enumerates the segments on this machine: shmkit's SysV segments
// (from /proc/sysvipc/shm, which lists every segment whatever its owner),
// file segments in opts.Dirs, and with opts.Foreign every other SysV
// segment. The headers of shmkit's segments are read without changing
// them: a SysV segment is attached read-only for the copy (its attach
// count, taken before, does not include Scan), a file is read with pread
// and never followed through a symbolic link. Segments that vanish during
// the scan are left out; a directory or /proc file that cannot be read is
// reported in the error, with what was found elsewhere. The result is
// sorted by location.
func Scan(opts ScanOptions) ([]Listed, error) {
	dirs := opts.Dirs
	if len(dirs) == 0 {
		dirs = []string{DefaultDir}
	}
	var out []Listed
	var errs []error
	sv, err := scanSysV(opts.Foreign)
	out = append(out, sv...)
	errs = append(errs, err)
	for _, d := range dirs {
		fs, err := scanDir(d)
		out = append(out, fs...)
		errs = append(errs, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Location < out[j].Location })
	return out, errors.Join(errs...)
}

// scanSysV reads /proc/sysvipc/shm ("key shmid perms size cpid lpid nattch
// uid gid cuid cgid atime dtime ctime …", the key in decimal).
func scanSysV(foreign bool) ([]Listed, error) {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return nil, fmt.Errorf("arena: list SysV segments: %w", err)
	}
	defer f.Close()
	var out []Listed
	sc := bufio.NewScanner(f)
	sc.Scan() // the column names
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		k, err1 := strconv.ParseInt(fs[0], 10, 64)
		id, err2 := strconv.Atoi(fs[1])
		if err1 != nil || err2 != nil {
			continue
		}
		key := Key(uint32(k))
		origin := OriginOf(key)
		if key == 0 || (origin.Foreign() && !foreign) {
			continue // key 0 is IPC_PRIVATE: removed, or never had a key
		}
		l := sysvLoc{key: key}
		st, err := sysvStat(l, id)
		if err != nil {
			continue // removed meanwhile
		}
		e := Listed{Stat: st, Origin: origin}
		if !origin.Foreign() {
			e.Header, e.HeaderErr = peekSysV(l, id)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("arena: list SysV segments: %w", err)
	}
	return out, nil
}

// peekSysV attaches segment id read-only, copies its header with atomic
// word loads and validates it.
func peekSysV(l sysvLoc, id int) (*layout.Header, error) {
	b, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		return nil, sysErr("read header", l, err)
	}
	defer unix.SysvShmDetach(b)
	s := &Segment{loc: l, data: b}
	return s.readHeader()
}

// scanDir lists the file segments of dir (see ScanOptions.Dirs).
func scanDir(dir string) ([]Listed, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("arena: list %s: %w", dir, err)
	}
	var out []Listed
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		l := fileLoc{path: filepath.Join(dir, e.Name())}
		h, ours, herr := peekFile(l)
		if !ours && !strings.HasPrefix(e.Name(), FilePrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Listed{Stat: fileStat(l, fi, nil), Origin: OriginShmkit, Header: h, HeaderErr: herr})
	}
	return out, nil
}

// peekFile reads and validates a file segment's header with pread; ours
// reports whether its first word is shmkit's magic (or it is a header
// being initialized).
func peekFile(l fileLoc) (h *layout.Header, ours bool, err error) {
	f, err := os.OpenFile(l.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, false, fileErr("read header", l, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fileErr("read header", l, err)
	}
	b := make([]byte, layout.HeaderSize)
	n, _ := f.ReadAt(b, 0)
	h, err = layout.Check(b[:n], uint64(fi.Size()))
	ours = n >= 8 && binary.NativeEndian.Uint64(b) == layout.Magic
	return h, ours, err
}
