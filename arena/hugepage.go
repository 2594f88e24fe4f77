package arena

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HugePageSize is the size of the huge pages shmkit asks for: 2 MiB, the
// x86-64 and arm64 default (Hugepagesize in /proc/meminfo).
const HugePageSize = 2 << 20

// shmHugeTLB is SHM_HUGETLB (linux/shm.h; x/sys/unix has no constant for
// it).
const shmHugeTLB = 0o4000

// HugePagePolicy says whether a segment created by Create or OpenOrCreate
// is backed by 2 MiB pages (Options.HugePages). A lookup in a large
// segment misses the TLB as well as the caches; with 4 KiB pages each miss
// also walks four levels of page tables, with 2 MiB pages three, and the
// TLB covers 512 times more memory.
//
// Where huge pages come from:
//
//   - SysV segments: shmget with SHM_HUGETLB, from the pool reserved in
//     /proc/sys/vm/nr_hugepages (root: echo N > /proc/sys/vm/nr_hugepages,
//     N ≥ the segment's size / 2 MiB; a user other than root also needs
//     to be in the group /proc/sys/vm/hugetlb_shm_group, or CAP_IPC_LOCK).
//     The pages are reserved at creation, so a shortage fails there and
//     not at a later page fault.
//   - File segments: the file system of the segment's directory must hand
//     out huge pages: a tmpfs mounted with huge=always, huge=within_size
//     or huge=advise (mount -t tmpfs -o huge=always,size=4G tmpfs DIR; the
//     mapping is also madvised MADV_HUGEPAGE, which huge=advise needs), or
//     hugetlbfs. The kernel may still fall back to 4 KiB pages for part of
//     a tmpfs file when memory is fragmented; Segment.PageUse says what it
//     got.
//   - Heap segments never have huge pages.
//
// The policy applies when a segment is created; an existing segment keeps
// the pages its creator got, whatever the policy of the process that opens
// it.
type HugePagePolicy uint8

const (
	// HugePagesOff (the default) creates segments with the system's
	// normal pages.
	HugePagesOff HugePagePolicy = iota
	// HugePagesTry uses huge pages where they are available and otherwise
	// creates the segment with normal pages, logging why at Warn level
	// ("arena: huge pages unavailable, using normal pages").
	HugePagesTry
	// HugePagesRequire fails the creation with an *Error wrapping
	// ErrNoHugePages, whose hint says what to do, when huge pages are not
	// available.
	HugePagesRequire
)

// String returns "off", "try" or "require".
func (p HugePagePolicy) String() string {
	switch p {
	case HugePagesOff:
		return "off"
	case HugePagesTry:
		return "try"
	case HugePagesRequire:
		return "require"
	}
	return fmt.Sprintf("HugePagePolicy(%d)", uint8(p))
}

// ParseHugePagePolicy parses "off", "try" or "require" (as String prints
// them), for command-line flags.
func ParseHugePagePolicy(s string) (HugePagePolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "":
		return HugePagesOff, nil
	case "try":
		return HugePagesTry, nil
	case "require":
		return HugePagesRequire, nil
	}
	return HugePagesOff, fmt.Errorf("arena: huge page policy %q: want off, try or require", s)
}

// ErrNoHugePages: Options.HugePages is HugePagesRequire and the segment
// cannot have huge pages here (none reserved, too few free, no permission,
// or a file system that does not hand them out). The *Error's hint says
// what to do.
var ErrNoHugePages = errors.New("huge pages are not available")

// hugeCreator is a location that can create a segment with huge pages.
type hugeCreator interface {
	// createHuge creates the segment with huge pages if it can; when it
	// cannot it returns errNoHuge (from noHuge), having created nothing.
	createHuge(size uint64, mode os.FileMode) (mapping, error)
}

// noHugeError says why a segment could not get huge pages and what to do.
type noHugeError struct {
	why, hint string
}

func (e *noHugeError) Error() string { return e.why }

// createAt creates the segment at loc under o's huge page policy.
func createAt(loc Location, size uint64, o *Options) (mapping, error) {
	if o.HugePages == HugePagesOff {
		return loc.create(size, o.Mode)
	}
	var nh *noHugeError
	if hc, ok := loc.(hugeCreator); ok {
		m, err := hc.createHuge(size, o.Mode)
		if !errors.As(err, &nh) {
			return m, err
		}
	} else {
		nh = &noHugeError{why: "a heap segment is Go memory, which has no huge pages", hint: "use a SysV or file segment"}
	}
	if o.HugePages == HugePagesRequire {
		return nil, &Error{Op: "create", Seg: loc.String(), Err: fmt.Errorf("%w: %s", ErrNoHugePages, nh.why), Hint: nh.hint}
	}
	o.Logger.Warn("arena: huge pages unavailable, using normal pages", "segment", loc.String(), "reason", nh.why, "fix", nh.hint)
	return loc.create(size, o.Mode)
}

// createHuge creates a SysV segment with SHM_HUGETLB.
func (l sysvLoc) createHuge(size uint64, mode os.FileMode) (mapping, error) {
	m, err := l.createFlags(size, mode, shmHugeTLB)
	if err == nil || !(errors.Is(err, ErrPermission) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, ErrSize)) {
		return m, err
	}
	need := (size + HugePageSize - 1) / HugePageSize
	total, free := HugePagesReserved()
	why := fmt.Sprintf("shmget SHM_HUGETLB for %d bytes (%d huge pages of 2 MiB): %v; %d huge pages reserved, %d free", size, need, errors.Unwrap(err), total, free)
	hint := fmt.Sprintf("reserve huge pages as root: echo %d > /proc/sys/vm/nr_hugepages (the %d in use plus %d)", total-free+need, total-free, need)
	if errors.Is(err, ErrPermission) {
		hint = "run as root, or add this process's group to /proc/sys/vm/hugetlb_shm_group (or give it CAP_IPC_LOCK); " + hint
	}
	return nil, &noHugeError{why: why, hint: hint}
}

// HugePagesReserved returns HugePages_Total and HugePages_Free from
// /proc/meminfo: the 2 MiB pages reserved for SHM_HUGETLB segments and how
// many are free (0, 0 if unreadable).
func HugePagesReserved() (total, free uint64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "HugePages_Total":
			total = n
		case "HugePages_Free":
			free = n
		}
	}
	return total, free
}

// Magic numbers of statfs(2).
const (
	tmpfsMagic     = 0x01021994
	hugetlbfsMagic = 0x958458f6
)

// createHuge creates a file segment in a directory whose file system
// hands out huge pages, and advises the kernel to use them.
func (l fileLoc) createHuge(size uint64, mode os.FileMode) (mapping, error) {
	dir := filepath.Dir(l.path)
	if ok, why := hugeFS(dir); !ok {
		return nil, &noHugeError{why: why,
			hint: "put the segment in a tmpfs mounted with huge pages: mount -t tmpfs -o huge=always,size=<bytes> tmpfs <dir>"}
	}
	m, err := l.create(size, mode)
	if err != nil {
		return nil, err
	}
	// Needed where the tmpfs says huge=advise; harmless elsewhere.
	_ = unix.Madvise(m.bytes(), unix.MADV_HUGEPAGE)
	return m, nil
}

// hugeFS says whether files created in dir get huge pages, and if not why.
func hugeFS(dir string) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Sprintf("statfs %s: %v", dir, err)
	}
	switch uint64(st.Type) {
	case hugetlbfsMagic:
		return true, ""
	case tmpfsMagic:
	default:
		return false, fmt.Sprintf("%s is not on a tmpfs or hugetlbfs (file system type %#x)", dir, st.Type)
	}
	if shmemHugeForced() {
		return true, ""
	}
	opt, mnt := tmpfsHugeOption(dir)
	switch opt {
	case "always", "within_size", "advise":
		if shmemHugeDenied() {
			return false, "/sys/kernel/mm/transparent_hugepage/shmem_enabled is deny"
		}
		return true, ""
	case "":
		opt = "never"
	}
	return false, fmt.Sprintf("the tmpfs at %s is mounted with huge=%s", mnt, opt)
}

// shmemSetting returns the selected value of
// /sys/kernel/mm/transparent_hugepage/shmem_enabled ("" if unreadable).
func shmemSetting() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "[") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}

func shmemHugeForced() bool { return shmemSetting() == "force" }
func shmemHugeDenied() bool { return shmemSetting() == "deny" }

// tmpfsHugeOption returns the huge= option of the mount holding dir and
// that mount's path, from /proc/self/mountinfo (the longest mount point
// that is a prefix of dir, after resolving symlinks).
func tmpfsHugeOption(dir string) (opt, mountPoint string) {
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	dir, _ = filepath.Abs(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", dir
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	best := -1
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs, pf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fs) < 5 || len(pf) < 3 {
			continue
		}
		mp := unescapeMount(fs[4])
		if !(dir == mp || mp == "/" || strings.HasPrefix(dir, mp+"/")) || len(mp) < best {
			continue
		}
		best, mountPoint, opt = len(mp), mp, ""
		for _, o := range strings.Split(pf[2], ",") {
			if v, ok := strings.CutPrefix(o, "huge="); ok {
				opt = v
			}
		}
	}
	return opt, mountPoint
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// PageUse says how the memory of a mapped segment is backed, as the
// kernel reports it for this process in /proc/self/smaps.
type PageUse struct {
	// KernelPageSize is the page size of the mapping in bytes: 2 MiB for
	// a hugetlb mapping (SysV SHM_HUGETLB, hugetlbfs), else the normal
	// page size even where tmpfs maps parts with huge pages.
	KernelPageSize uint64
	// Resident is the bytes of the mapping present in this process's page
	// tables (Rss plus hugetlb pages).
	Resident uint64
	// Huge is the part of Resident mapped with 2 MiB pages (hugetlb,
	// ShmemPmdMapped, FilePmdMapped, AnonHugePages).
	Huge uint64
}

// PageUse reports how the segment's memory is mapped in this process (its
// pages that have been touched). Heap segments report an error.
func (s *Segment) PageUse() (PageUse, error) {
	if _, ok := s.loc.(heapLoc); ok || len(s.data) == 0 {
		return PageUse{}, fmt.Errorf("arena: %s: page use: not a mapped segment", s.loc)
	}
	start := addrOf(s.data)
	end := start + uint64(len(s.data))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return PageUse{}, fmt.Errorf("arena: %s: page use: %w", s.loc, err)
	}
	defer f.Close()
	var u PageUse
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := smapsRange(line); ok {
			in = lo < end && hi > start
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		n *= 1024
		switch k {
		case "KernelPageSize":
			u.KernelPageSize = max(u.KernelPageSize, n)
		case "Rss":
			u.Resident += n
		case "Shared_Hugetlb", "Private_Hugetlb":
			u.Resident += n
			u.Huge += n
		case "ShmemPmdMapped", "FilePmdMapped", "AnonHugePages":
			u.Huge += n
		}
	}
	if err := sc.Err(); err != nil {
		return PageUse{}, fmt.Errorf("arena: %s: page use: %w", s.loc, err)
	}
	return u, nil
}

// smapsRange parses the "lo-hi perms ..." header line of an smaps entry.
func smapsRange(line string) (lo, hi uint64, ok bool) {
	r, _, found := strings.Cut(line, " ")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(r, "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(a, 16, 64)
	hi, err2 := strconv.ParseUint(b, 16, 64)
	return lo, hi, err1 == nil && err2 == nil
}
