package arena

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// HeapStore holds heap-backed segments by name for one process. The race
// detector cannot see memory outside the Go heap, so tests run the same
// shared-memory protocols on heap segments, from many goroutines, under
// go test -race. A HeapStore is what a SysV key space is to processes: the
// goroutines of a test share one store.
type HeapStore struct {
	mu   sync.Mutex
	segs map[string]*heapSeg
}

type heapSeg struct {
	words   []uint64 // keeps the memory alive and 8-byte aligned
	data    []byte
	attach  int
	removed bool
	mode    os.FileMode
	created time.Time
	lock    *os.File // memfd: the liveness lock file of this segment
}

// NewHeapStore returns an empty store.
func NewHeapStore() *HeapStore { return &HeapStore{segs: map[string]*heapSeg{}} }

// At returns the location of the heap segment called name in h.
func (h *HeapStore) At(name string) Location { return heapLoc{h: h, name: name} }

// Len returns how many segments the store holds (tests use it to check that
// everything was removed).
func (h *HeapStore) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.segs)
}

type heapLoc struct {
	h    *HeapStore
	name string
}

func (l heapLoc) String() string     { return "heap segment " + l.name }
func (l heapLoc) RemoveHint() string { return "HeapStore remove " + l.name }
func (l heapLoc) Stage(n int) (Location, error) {
	if err := stageCheck(n); err != nil {
		return nil, err
	}
	return heapLoc{h: l.h, name: fmt.Sprintf("%s.s%d", l.name, n)}, nil
}

func (l heapLoc) create(size uint64, mode os.FileMode) (mapping, error) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	if _, ok := l.h.segs[l.name]; ok {
		return nil, &Error{Op: "create", Seg: l.String(), Err: ErrExists}
	}
	words := make([]uint64, (size+7)/8)
	var data []byte
	if size > 0 {
		data = wordBytes(words, size)
	}
	fd, err := unix.MemfdCreate("shmkit-heap-lock", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, &Error{Op: "create", Seg: l.String(), Err: fmt.Errorf("memfd for liveness locks: %w", err)}
	}
	s := &heapSeg{words: words, data: data, attach: 1, mode: defaultMode(mode), created: time.Now(),
		lock: os.NewFile(uintptr(fd), "shmkit-heap-lock")}
	l.h.segs[l.name] = s
	return &heapMap{loc: l, s: s}, nil
}

func (l heapLoc) open(a access) (mapping, error) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	s, ok := l.h.segs[l.name]
	if !ok {
		return nil, &Error{Op: "open", Seg: l.String(), Err: ErrNotFound}
	}
	// The owner is this process; the mode is checked as for the other
	// backends, so that a set-up tested on the heap behaves the same.
	euid := uint32(os.Geteuid())
	if err := a.check("open", l, owner{uid: euid, creator: euid, mode: s.mode}); err != nil {
		return nil, err
	}
	s.attach++
	return &heapMap{loc: l, s: s}, nil
}

func (l heapLoc) remove(force bool) error {
	l.h.mu.Lock()
	s, ok := l.h.segs[l.name]
	l.h.mu.Unlock()
	if !ok {
		return &Error{Op: "remove", Seg: l.String(), Err: ErrNotFound}
	}
	if err := retire(l, s.data, func() (int, error) {
		l.h.mu.Lock()
		defer l.h.mu.Unlock()
		return s.attach + 1, nil // +1: retire counts the remover as attached
	}, force); err != nil {
		return err
	}
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	s.removed = true
	delete(l.h.segs, l.name)
	// Handles still attached keep their own descriptors of the memfd.
	_ = s.lock.Close()
	return nil
}

func (l heapLoc) statNoAttach() (Stat, error) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	s, ok := l.h.segs[l.name]
	if !ok {
		return Stat{}, &Error{Op: "stat", Seg: l.String(), Err: ErrNotFound}
	}
	return s.statLocked(l), nil
}

func (s *heapSeg) statLocked(l heapLoc) Stat {
	return Stat{Location: l.String(), Size: uint64(len(s.data)), Attached: s.attach,
		OwnerUID: uint32(os.Getuid()), Mode: s.mode, CreatorPID: os.Getpid(), Created: s.created, Removed: s.removed}
}

type heapMap struct {
	loc heapLoc
	s   *heapSeg
}

func (m *heapMap) bytes() []byte { return m.s.data }
func (m *heapMap) close() error {
	m.loc.h.mu.Lock()
	defer m.loc.h.mu.Unlock()
	m.s.attach--
	return nil
}
func (m *heapMap) removed() (bool, error) {
	m.loc.h.mu.Lock()
	defer m.loc.h.mu.Unlock()
	return m.s.removed, nil
}
func (m *heapMap) stat() (Stat, error) {
	m.loc.h.mu.Lock()
	defer m.loc.h.mu.Unlock()
	return m.s.statLocked(m.loc), nil
}
