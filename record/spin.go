package record

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Waiting for a reply by polling (ClientPolicy.SpinWait).
//
// A command's reply on loopback or a fast LAN comes back in tens of
// microseconds. A goroutine that parks on its socket meanwhile hands its
// thread to the Go scheduler, which, with nothing else to run, sleeps
// in epoll_wait; the reply then has to wake that thread, and on a
// virtual machine waking an idle vCPU costs about as much as the round
// trip itself (on the 2-vCPU machine of BENCHMARKS.md a loopback
// ping-pong took 58 µs at the median with blocking reads and 17 µs with
// the reader polling its socket). So the client polls the socket with
// non-blocking reads for up to SpinWait before it parks.
//
// Polling burns the CPU the wait would have slept through, which pays
// only while a CPU is idle and the reply comes back within the window.
// So the client polls only while the machine's count of runnable threads
// (/proc/loadavg, sampled at most every spinSample) leaves a CPU idle
// besides its own; otherwise it parks at once. And a poll misses when the
// window ends without a reply (a slow server) or when it finds itself
// descheduled between two reads (more than spinGap: another thread
// wanted the CPU); it then parks. Each miss adds one to a count, each hit
// takes one off, and after a miss the client skips polling for the next
// 2^count commands, at most spinSkipMax. On a quiet machine polls hit and
// the count stays 0; on a loaded one, or with more commands in flight
// than cores, the client parks, as it would without polling. Measured
// side by side with shmbench records on 2 vCPUs (BENCHMARKS.md): with
// polls decided by misses alone, 4–8 client processes kept polling and
// took CPU from the server (x0.89-0.98 of the official client's
// throughput at P = 4 in some runs); with the runnable count, x1.00-1.04
// at P = 4 and x0.98-1.08 at P = 8, where the server is the limit.
// A process with one usable CPU (GOMAXPROCS 1) never polls: its poll
// would hold the only thread that could run anything else.

// spinSkipMax bounds how many commands skip polling after a run of polls
// that found no reply.
const spinSkipMax = 1024

// spinGap is the longest pause between two reads of a poll that does not
// count as being descheduled (a non-blocking read takes about a
// microsecond).
const spinGap = 20 * time.Microsecond

// spinner is a Client's polling state, shared by its connections (a
// heuristic: concurrent updates may lose one, which only shifts when the
// next poll happens).
type spinner struct {
	wait  time.Duration // 0: never poll
	skip  atomic.Int64  // commands left that skip polling
	fails atomic.Int32  // misses less hits, at least 0

	cpus    int          // runtime.NumCPU()
	loadavg *os.File     // /proc/loadavg, nil if it cannot be opened
	sampled atomic.Int64 // when busy was last read (UnixNano)
	busy    atomic.Bool  // the last sample: no CPU was idle
}

// spinSample is how often a client reads the machine's count of runnable
// threads (/proc/loadavg, a few microseconds).
const spinSample = 5 * time.Millisecond

func newSpinner(wait time.Duration) *spinner {
	if wait < 0 || runtime.GOMAXPROCS(0) < 2 {
		wait = 0
	}
	s := &spinner{wait: wait, cpus: runtime.NumCPU()}
	if wait > 0 {
		s.loadavg, _ = os.Open("/proc/loadavg")
	}
	return s
}

// close releases the spinner's file.
func (s *spinner) close() {
	if s.loadavg != nil {
		s.loadavg.Close()
	}
}

// machineBusy reports whether, at the last sample (taken again if older
// than spinSample), the machine had as many other runnable threads as
// CPUs: a poll would then take a CPU that another thread (perhaps the
// server's) wants. An unreadable /proc/loadavg counts as not busy (the
// misses then decide).
func (s *spinner) machineBusy() bool {
	now := time.Now().UnixNano()
	last := s.sampled.Load()
	if now-last < int64(spinSample) || !s.sampled.CompareAndSwap(last, now) {
		return s.busy.Load()
	}
	if s.loadavg == nil {
		return false
	}
	var buf [128]byte
	n, err := s.loadavg.ReadAt(buf[:], 0)
	if n <= 0 || (err != nil && err != io.EOF) {
		s.busy.Store(false)
		return false
	}
	r, ok := runnable(buf[:n])
	busy := ok && r-1 >= s.cpus
	s.busy.Store(busy)
	return busy
}

// runnable parses the count of runnable threads out of /proc/loadavg's
// "0.20 0.18 0.12 R/T PID" without allocating.
func runnable(b []byte) (int, bool) {
	field := 0
	i := 0
	for ; i < len(b) && field < 3; i++ {
		if b[i] == ' ' {
			field++
		}
	}
	n, digits := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && digits < 9; i++ {
		n = n*10 + int(b[i]-'0')
		digits++
	}
	return n, field == 3 && digits > 0 && i < len(b) && b[i] == '/'
}

// window returns how long this read may poll: 0 while polls are being
// skipped.
func (s *spinner) window() time.Duration {
	if s.wait == 0 {
		return 0
	}
	if s.skip.Load() > 0 {
		s.skip.Add(-1)
		return 0
	}
	if s.machineBusy() {
		return 0
	}
	return s.wait
}

// missed records a poll that ended without a reply.
func (s *spinner) missed() {
	f := s.fails.Add(1)
	s.skip.Store(min(int64(1)<<min(f, 30), spinSkipMax))
}

// hit records a poll that found the reply.
func (s *spinner) hit() {
	if f := s.fails.Load(); f > 0 {
		s.fails.Store(f - 1)
	}
}

// spinReader reads a plain TCP connection, polling for up to the
// spinner's window before it parks in the runtime's poller (which keeps
// the connection's deadline and its cancellation by SetDeadline). A
// connection reads from one goroutine at a time, so the state of the read
// in progress lives in the reader itself, and the function handed to the
// poller is bound once: a read allocates nothing.
type spinReader struct {
	nc   net.Conn
	rc   syscall.RawConn
	s    *spinner
	poll func(fd uintptr) bool // r.try, bound at construction

	// The read in progress.
	p      []byte
	n      int
	rerr   error
	win    time.Duration // 0: park when the socket is empty
	polled bool          // a poll ran (the socket had nothing at first)
	hit    bool          // a poll found data
	end    time.Time     // when the poll gives up
	last   time.Time     // the poll's previous read
}

// newReader returns what a connection's bufio.Reader reads from: nc
// itself, or a spinReader over it when polling is on and nc is a plain
// TCP connection.
func newReader(nc net.Conn, s *spinner) io.Reader {
	if s == nil || s.wait == 0 {
		return nc
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	r := &spinReader{nc: nc, rc: rc, s: s}
	r.poll = r.try
	return r
}

// try is called by the poller with the socket: it reads what there is,
// polls while the window lasts, and returns false to park.
func (r *spinReader) try(fd uintptr) bool {
	for {
		r.n, r.rerr = unix.Read(int(fd), r.p)
		switch {
		case r.rerr == unix.EINTR:
			continue
		case r.rerr != unix.EAGAIN:
			r.hit = r.polled && r.win != 0 // found by the poll, not after parking
			return true
		case r.win == 0:
			return false
		case !r.polled:
			r.last = time.Now()
			r.polled, r.end = true, r.last.Add(r.win)
		default:
			now := time.Now()
			if now.After(r.end) || now.Sub(r.last) > spinGap {
				r.win = 0
				r.s.missed()
				return false
			}
			r.last = now
		}
	}
}

// Read reads into p what the socket has, polling as above; 0 bytes and
// no error is the end of the stream (io.EOF).
func (r *spinReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.rerr, r.polled, r.hit = p, 0, nil, false, false
	r.win = r.s.window()
	err := r.rc.Read(r.poll)
	n, rerr := r.n, r.rerr
	r.p = nil
	if r.hit {
		r.s.hit()
	}
	if err != nil {
		// The poller's error: the deadline passed (the connection's
		// SetDeadline, a cancelled context) or the connection was closed.
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: err}
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}
