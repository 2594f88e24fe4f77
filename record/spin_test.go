package record

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestSpinnerBackoff: a poll without a reply makes the next 2, then 4, …
// commands skip polling, up to spinSkipMax; each poll that finds the
// reply takes one miss back.
func TestSpinnerBackoff(t *testing.T) {
	s := &spinner{wait: time.Millisecond}
	skipped := func() int {
		n := 0
		for s.window() == 0 {
			n++
		}
		return n
	}
	for i, want := range []int{2, 4, 8, 16} {
		s.missed()
		if got := skipped(); got != want {
			t.Fatalf("after %d misses: %d commands skipped polling, want %d", i+1, got, want)
		}
	}
	for range 40 {
		s.missed()
	}
	if got := skipped(); got != spinSkipMax {
		t.Fatalf("after many misses: %d skipped, want the bound %d", got, spinSkipMax)
	}
	// Hits pay misses back one for one.
	f := s.fails.Load()
	for range f - 1 {
		s.hit()
	}
	if got := s.fails.Load(); got != 1 {
		t.Fatalf("%d hits after %d misses leave %d, want 1", f-1, f, got)
	}
	s.hit()
	s.hit()
	s.missed()
	if got := skipped(); got != 2 {
		t.Fatalf("a miss after the misses were paid back: %d skipped, want 2", got)
	}
	if w := (&spinner{}).window(); w != 0 {
		t.Fatalf("SpinWait 0 polls for %v", w)
	}
}

// TestSpinReaderHitAndMiss reads over a real socket: a reply that comes
// within the window is found by the poll (which takes one miss back), one
// that comes after it is read after the reader parks (a miss counted),
// and the bytes are right either way.
func TestSpinReaderHitAndMiss(t *testing.T) {
	c, srv := tcpPair(t)
	s := &spinner{wait: 10 * time.Second}
	r := newReader(c, s)
	if _, ok := r.(*spinReader); !ok {
		t.Fatalf("newReader gave %T for a TCP connection, want *spinReader", r)
	}
	buf := make([]byte, 16)
	// A poll also misses when it finds itself descheduled (spinGap),
	// which a loaded machine can do to any one attempt: some of 50 must
	// hit.
	hits := 0
	for range 50 {
		s.fails.Store(3)
		s.skip.Store(0)
		go func() {
			// Busy: a timer's wake-up would take longer than the reply.
			for t0 := time.Now(); time.Since(t0) < 30*time.Microsecond; {
			}
			srv.Write([]byte("hit"))
		}()
		n, err := r.Read(buf)
		if err != nil || string(buf[:n]) != "hit" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		switch f := s.fails.Load(); f {
		case 2:
			hits++
		case 4: // descheduled mid-poll
		case 3: // the reply was there before the first read: no poll
		default:
			t.Fatalf("a poll left %d misses of 3, want 2 (a hit), 4 (a miss) or 3 (no poll)", f)
		}
	}
	// Under the race detector (slower reads, CI's parallel load) a poll
	// can be descheduled every time; the outcomes above are still checked.
	if hits == 0 && !raceEnabled {
		t.Fatal("no poll of 50 found a reply sent 30 µs later")
	}

	s.fails.Store(0)
	s.skip.Store(0)
	s.wait = time.Millisecond
	go func() { time.Sleep(100 * time.Millisecond); srv.Write([]byte("late")) }()
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if f, k := s.fails.Load(), s.skip.Load(); f != 1 || k != 2 {
		t.Fatalf("after a poll that timed out: %d misses, %d to skip; want 1 and 2", f, k)
	}
}

// TestSpinReaderEndAndDeadline: the end of the stream is io.EOF, and a
// deadline passing while the reader is parked is a timeout error (which
// the client counts as a socket timeout), as with the connection's own
// Read.
func TestSpinReaderEndAndDeadline(t *testing.T) {
	c, srv := tcpPair(t)
	r := newReader(c, &spinner{wait: time.Millisecond})
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := r.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if e := netErr("reply", err); !errors.Is(e, ErrTimeout) || !errors.Is(e, ErrNetwork) {
		t.Fatalf("the client classifies it as %v, want ErrTimeout and ErrNetwork", e)
	}
	c.SetReadDeadline(time.Time{})
	srv.Close()
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// TestSpinOnlyWherePossible: no polling for SpinWait 0, for a connection
// that is not plain TCP, or with GOMAXPROCS 1.
func TestSpinOnlyWherePossible(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if r := newReader(a, &spinner{wait: time.Millisecond}); r != io.Reader(a) {
		t.Errorf("a pipe got %T, want the connection itself", r)
	}
	c, _ := tcpPair(t)
	if r := newReader(c, newSpinner(0)); r != io.Reader(c) {
		t.Errorf("SpinWait 0 got %T, want the connection itself", r)
	}
	old := runtime.GOMAXPROCS(1)
	s := newSpinner(time.Millisecond)
	runtime.GOMAXPROCS(old)
	if s.wait != 0 {
		t.Errorf("GOMAXPROCS 1: SpinWait %v, want 0", s.wait)
	}
	if old > 1 {
		if s := newSpinner(time.Millisecond); s.wait != time.Millisecond {
			t.Errorf("GOMAXPROCS %d: SpinWait %v, want 1ms", old, s.wait)
		}
	}
}

// TestSpinReaderAllocates: a read through the poller allocates nothing
// (the client's allocations per command are a target).
func TestSpinReaderAllocates(t *testing.T) {
	c, srv := tcpPair(t)
	r := newReader(c, &spinner{wait: time.Second})
	msg := []byte("0123456789")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		srv.Write(msg)
		n := 0
		for n < len(msg) {
			k, err := r.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read, want 0", allocs)
	}
}

// TestMachineBusy: the count of runnable threads in /proc/loadavg's
// format decides (this thread excluded), sampled at most every
// spinSample, without allocating; an unreadable file never stops polls.
func TestMachineBusy(t *testing.T) {
	for _, c := range []struct {
		in     string
		n      int
		parsed bool
	}{
		{"0.20 0.18 0.12 3/80 11206\n", 3, true},
		{"5.46 4.95 4.30 17/78 28564", 17, true},
		{"0.20 0.18 0.12 x/80 1", 0, false},
		{"0.20 0.18 3/80", 0, false},
		{"", 0, false},
		{"0.20 0.18 0.12 12345678901/80 1", 123456789, false}, // too many digits: refused
	} {
		if n, ok := runnable([]byte(c.in)); n != c.n || ok != c.parsed {
			t.Errorf("runnable(%q) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.parsed)
		}
	}
	path := filepath.Join(t.TempDir(), "loadavg")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("1.00 1.00 1.00 3/80 1\n")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &spinner{wait: time.Millisecond, cpus: 2, loadavg: f}
	if !s.machineBusy() || s.window() != 0 {
		t.Fatal("3 runnable (2 besides this one) on 2 CPUs: not busy")
	}
	write("1.00 1.00 1.00 2/80 1\n")
	if !s.machineBusy() {
		t.Fatal("a sample within spinSample of the last was taken again")
	}
	s.sampled.Store(0)
	if s.machineBusy() || s.window() != time.Millisecond {
		t.Fatal("2 runnable (1 besides this one) on 2 CPUs: busy")
	}
	// (The race detector's instrumentation allocates in os.File.ReadAt.)
	if a := testing.AllocsPerRun(100, func() { s.sampled.Store(0); s.machineBusy() }); a != 0 && !raceEnabled {
		t.Fatalf("a sample allocates %v times", a)
	}
	s.loadavg = nil
	s.sampled.Store(0)
	if s.machineBusy() {
		t.Fatal("no /proc/loadavg: busy")
	}
}
