package procid

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const bootIDPath = "/proc/sys/kernel/random/boot_id"

// procStat holds the fields of /proc/<pid>/stat this package uses.
type procStat struct {
	state     byte   // field 3: R, S, D, Z, T, t, X, ...
	startTime uint64 // field 22
}

// readStat reads /proc/<name>/stat, where name is a pid or "self".
// A missing process yields an error wrapping fs.ErrNotExist.
func readStat(name string) (procStat, error) {
	path := "/proc/" + name + "/stat"
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// parseStat parses the contents of /proc/<pid>/stat. Field 2 (comm) is in
// parentheses and may itself contain spaces and ')', so fields are counted
// from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, ErrMalformed
	}
	f := strings.Fields(string(b[i+2:])) // f[0] is field 3
	const startField = 22 - 3
	if len(f) <= startField || len(f[0]) != 1 {
		return procStat{}, ErrMalformed
	}
	start, err := strconv.ParseUint(f[startField], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("%w: start time %q", ErrMalformed, f[startField])
	}
	return procStat{state: f[0][0], startTime: start}, nil
}

// parseBootID parses a UUID such as "a0defbf3-6159-4a3a-ad98-8b3fc837feda".
func parseBootID(s string) ([16]byte, error) {
	var id [16]byte
	s = strings.TrimSpace(s)
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return id, fmt.Errorf("%w: boot id %q", ErrMalformed, s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("%w: boot id %q: %w", ErrMalformed, s, err)
	}
	return id, nil
}

// readBootAndNS returns this boot's id and the caller's PID namespace inode.
func readBootAndNS() ([16]byte, uint64, error) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return [16]byte{}, 0, fmt.Errorf("procid: read boot id: %w", err)
	}
	boot, err := parseBootID(string(b))
	if err != nil {
		return [16]byte{}, 0, fmt.Errorf("procid: %s: %w", bootIDPath, err)
	}
	var st unix.Stat_t
	const nsPath = "/proc/self/ns/pid"
	if err := unix.Stat(nsPath, &st); err != nil {
		return [16]byte{}, 0, fmt.Errorf("procid: stat %s: %w", nsPath, err)
	}
	return boot, st.Ino, nil
}
