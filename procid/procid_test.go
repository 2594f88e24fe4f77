package procid_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/quick"
	"time"

	"github.com/shmkit/shmkit/procid"
)

// hangGuard bounds every wait in these tests; it is not a speed assertion.
const hangGuard = 10 * time.Second

// TestHelperProcess is not a test: it is the body of the child processes
// started by startChild. It sleeps until killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		return
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

// startChild re-executes the test binary as a sleeping helper. The child
// dies with the parent (Pdeathsig) and is killed and reaped at cleanup.
func startChild(tb testing.TB) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start helper: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func mustSelf(t *testing.T) procid.Identity {
	t.Helper()
	id, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSelfAndOf(t *testing.T) {
	self := mustSelf(t)
	if self.PID != uint32(os.Getpid()) || self.StartTime == 0 || self.PIDNS == 0 || self.BootID == [16]byte{} {
		t.Fatalf("Self() = %+v: want our pid and non-zero fields", self)
	}
	of, err := procid.Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if of != self {
		t.Fatalf("Of(getpid) = %v, Self() = %v", of, self)
	}
	if l, r := self.Check(); l != procid.Alive {
		t.Fatalf("Self().Check() = %v (%s), want alive", l, r)
	}
	if _, err := procid.Of(0); !errors.Is(err, procid.ErrInvalid) {
		t.Errorf("Of(0) error = %v, want ErrInvalid", err)
	}
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	var pidMax int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pidMax); err != nil {
		t.Fatal(err)
	}
	if _, err := procid.Of(pidMax + 1); !errors.Is(err, procid.ErrNoProcess) {
		t.Errorf("Of(pid_max+1) error = %v, want ErrNoProcess", err)
	}
}

func TestString(t *testing.T) {
	id := procid.Identity{PID: 1234, StartTime: 5678, BootID: [16]byte{0x1a, 0x2b, 0x3c, 0x4d, 5}, PIDNS: 4026531836}
	want := "pid 1234 (start 5678, boot 1a2b3c4d…, pidns 4026531836)"
	if got := id.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if !(procid.Identity{}).IsZero() || id.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

// TestCheckZombie is the point of the pidfd/state checks: a SIGKILLed child
// that is not reaped yet still passes kill(pid, 0) and keeps its start
// time, but Check must call it dead.
func TestCheckZombie(t *testing.T) {
	cmd := startChild(t)
	pid := cmd.Process.Pid
	id, err := procid.Of(pid)
	if err != nil {
		t.Fatal(err)
	}
	if l, r := id.Check(); l != procid.Alive {
		t.Fatalf("Check() before kill = %v (%s), want alive", l, r)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Signal delivery is asynchronous: wait, bounded, for the exit.
	l, r := id.Check()
	for deadline := time.Now().Add(hangGuard); l != procid.Dead; l, r = id.Check() {
		if time.Now().After(deadline) {
			t.Fatalf("Check() after SIGKILL = %v (%s) for %v, want dead", l, r, hangGuard)
		}
		time.Sleep(time.Millisecond)
	}
	if r != procid.ReasonExited && r != procid.ReasonZombie {
		t.Errorf("reason = %q, want %q or %q", r, procid.ReasonExited, procid.ReasonZombie)
	}
	// Not reaped yet: kill(pid, 0) still succeeds and /proc still shows
	// the same start time, which is why neither can detect death.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("kill(pid, 0) on the unreaped zombie = %v, want success", err)
	}
	if again, err := procid.Of(pid); err != nil || again != id {
		t.Errorf("Of(zombie) = %v, %v; want %v", again, err, id)
	}
	_ = cmd.Wait() // reap
	if l, r := id.Check(); l != procid.Dead {
		t.Errorf("Check() after reaping = %v (%s), want dead", l, r)
	}
}

func TestCheckMismatches(t *testing.T) {
	self := mustSelf(t)

	reused := self
	reused.StartTime++
	if l, r := reused.Check(); l != procid.Dead || !strings.Contains(string(r), "pid reused") {
		t.Errorf("start time mismatch: Check() = %v (%s), want dead, pid reused", l, r)
	}
	otherBoot := self
	otherBoot.BootID[0] ^= 0xff
	if l, r := otherBoot.Check(); l != procid.Dead || r != procid.ReasonOtherBoot {
		t.Errorf("boot id mismatch: Check() = %v (%s), want dead, other boot", l, r)
	}
	otherNS := self
	otherNS.PIDNS++
	if l, r := otherNS.Check(); l != procid.Unknown || r != procid.ReasonOtherPIDNS {
		t.Errorf("pidns mismatch: Check() = %v (%s), want unknown", l, r)
	}
	unknownNS := self
	unknownNS.PIDNS = 0 // zero means "unknown": treated as ours
	if l, r := unknownNS.Check(); l != procid.Alive {
		t.Errorf("pidns 0: Check() = %v (%s), want alive", l, r)
	}
	if l, _ := (procid.Identity{}).Check(); l != procid.Unknown {
		t.Errorf("zero identity: Check() = %v, want unknown", l)
	}
}

func TestPackRoundTrip(t *testing.T) {
	full := procid.Identity{PID: ^uint32(0), StartTime: ^uint64(0), PIDNS: ^uint64(0)}
	for i := range full.BootID {
		full.BootID[i] = 0xff
	}
	for _, id := range []procid.Identity{
		{},
		mustSelf(t),
		full,
		{PID: 1, StartTime: 2, BootID: [16]byte{15: 1}, PIDNS: 1 << 40},
	} {
		w := id.Pack()
		if got := procid.Unpack(w); got != id {
			t.Errorf("Unpack(Pack(%v)) = %v", id, got)
		}
	}
	if (procid.Identity{}).Pack() != [procid.Words]uint64{} {
		t.Error("zero identity must pack to zero words")
	}
	roundTrip := func(pid uint32, start uint64, boot [16]byte, ns uint64) bool {
		id := procid.Identity{PID: pid, StartTime: start, BootID: boot, PIDNS: ns}
		return procid.Unpack(id.Pack()) == id
	}
	if err := quick.Check(roundTrip, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
}

func TestWatchKill(t *testing.T) {
	for _, tc := range []struct {
		opts procid.WatchOptions
		want procid.Method
	}{
		{procid.WatchOptions{}, procid.MethodPidfd},
		{procid.WatchOptions{ForcePoll: true, PollInterval: time.Millisecond}, procid.MethodProcPoll},
	} {
		t.Run(string(tc.want), func(t *testing.T) {
			cmd := startChild(t)
			id, err := procid.Of(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			w, err := procid.WatchWith(id, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if w.Method() != tc.want {
				t.Fatalf("Method() = %q, want %q", w.Method(), tc.want)
			}
			select {
			case <-w.Done():
				t.Fatalf("Done closed while the child is alive (reason %q)", w.Reason())
			case <-time.After(20 * time.Millisecond):
			}
			if err := cmd.Process.Kill(); err != nil { // SIGKILL, not reaped
				t.Fatal(err)
			}
			select {
			case <-w.Done():
			case <-time.After(hangGuard):
				t.Fatalf("Done not closed %v after SIGKILL", hangGuard)
			}
			if r := w.Reason(); r != procid.ReasonExited && r != procid.ReasonZombie {
				t.Errorf("Reason() = %q", r)
			}
		})
	}
}

func TestWatchAlreadyDead(t *testing.T) {
	self := mustSelf(t)
	reused, otherBoot := self, self
	reused.StartTime++
	otherBoot.BootID[3] ^= 1
	for _, tc := range []struct {
		id   procid.Identity
		opts procid.WatchOptions
		want procid.Reason
	}{
		{reused, procid.WatchOptions{}, procid.ReasonPIDReused},
		{reused, procid.WatchOptions{ForcePoll: true}, procid.ReasonPIDReused},
		{otherBoot, procid.WatchOptions{}, procid.ReasonOtherBoot},
	} {
		w, err := procid.WatchWith(tc.id, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.Done():
		case <-time.After(hangGuard):
			t.Fatalf("Watch(%v): Done not closed", tc.id)
		}
		if w.Reason() != tc.want {
			t.Errorf("Watch(%v).Reason() = %q, want %q", tc.id, w.Reason(), tc.want)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}
	otherNS := self
	otherNS.PIDNS++
	if _, err := procid.Watch(otherNS); !errors.Is(err, procid.ErrUnknowable) {
		t.Errorf("Watch(other pidns) error = %v, want ErrUnknowable", err)
	}
	if _, err := procid.Watch(procid.Identity{}); !errors.Is(err, procid.ErrInvalid) {
		t.Errorf("Watch(zero) error = %v, want ErrInvalid", err)
	}
}

// TestWatchCloseNoLeak closes watchers of a live process (ourselves) and
// checks that their goroutines are gone.
func TestWatchCloseNoLeak(t *testing.T) {
	self := mustSelf(t)
	before := runtime.NumGoroutine()
	var ws []*procid.Watcher
	for i := range 20 {
		w, err := procid.WatchWith(self, procid.WatchOptions{ForcePoll: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	// Each watcher runs a goroutine. (Goroutines of earlier tests may end
	// meanwhile, so only the lower bound that cannot move is checked.)
	if n := runtime.NumGoroutine(); n < len(ws) {
		t.Fatalf("%d goroutines with %d watchers, started from %d", n, len(ws), before)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for _, w := range ws {
			if err := w.Close(); err != nil {
				t.Error(err)
			}
			_ = w.Close() // idempotent
		}
	}()
	select {
	case <-closed:
	case <-time.After(hangGuard):
		t.Fatal("Close hangs")
	}
	for deadline := time.Now().Add(hangGuard); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines leaked: %d, want <= %d", runtime.NumGoroutine(), before)
		}
	}
	for _, w := range ws {
		select {
		case <-w.Done():
			t.Fatal("Close must not close Done")
		default:
		}
	}
}

// BenchmarkPidfdAfterKill measures the delay from SIGKILL of a child to
// the pidfd Watcher's Done closing. ns/op is the median of that delay
// (spawning the children is excluded).
func BenchmarkPidfdAfterKill(b *testing.B) {
	lat := make([]time.Duration, 0, b.N)
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		id, err := procid.Of(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		w, err := procid.Watch(id)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		_ = cmd.Process.Kill()
		select {
		case <-w.Done():
			lat = append(lat, time.Since(t0))
		case <-time.After(hangGuard):
			b.Fatal("Done not closed after SIGKILL")
		}
		_ = w.Close()
		_ = cmd.Wait()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "ns/op")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}
