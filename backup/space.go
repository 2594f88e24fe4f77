package backup

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// spaceProbe reports free disk and memory (tests substitute one).
type spaceProbe interface {
	// freeDisk returns the bytes an unprivileged user may still write in
	// the file system holding path.
	freeDisk(path string) (uint64, error)
	// sysvRoom returns how many bytes of new SysV segments fit: the least
	// of the available memory and what kernel.shmall leaves, and the
	// largest segment kernel.shmmax allows.
	sysvRoom() (room, maxSeg uint64, err error)
}

type sysProbe struct{}

func (sysProbe) freeDisk(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func (sysProbe) sysvRoom() (uint64, uint64, error) {
	avail, err := memAvailable()
	if err != nil {
		return 0, 0, err
	}
	shmall, err1 := readUint("/proc/sys/kernel/shmall")
	shmmax, err2 := readUint("/proc/sys/kernel/shmmax")
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("kernel limits: %v %v", err1, err2)
	}
	page := uint64(os.Getpagesize())
	used, err := sysvUsed()
	if err != nil {
		return 0, 0, err
	}
	room := avail
	if shmall < 1<<52 { // otherwise unlimited in practice
		if lim := shmall * page; lim > used {
			room = min(room, lim-used)
		} else {
			room = 0
		}
	}
	return room, shmmax, nil
}

// memAvailable is MemAvailable of /proc/meminfo in bytes.
func memAvailable() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %q: %w", sc.Text(), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemAvailable")
}

// sysvUsed sums the sizes of the SysV segments of this IPC namespace.
func sysvUsed() (uint64, error) {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var sum uint64
	for first := true; sc.Scan(); first = false {
		fs := strings.Fields(sc.Text())
		if first || len(fs) < 4 {
			continue
		}
		n, err := strconv.ParseUint(fs[3], 10, 64)
		if err == nil {
			sum += n
		}
	}
	return sum, sc.Err()
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
