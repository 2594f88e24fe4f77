package failpoint_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/failpoint"
)

// hangGuard bounds every wait in these tests; it is not a speed assertion.
const hangGuard = 10 * time.Second

const cldStopped = 5 // si_code of a stopped child (CLD_STOPPED)

// TestHelperProcess is not a test: it is the body of the child processes
// started by startChild. It hits failpoint $FP_TEST_POINT five times,
// printing "after N" after each hit.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		return
	}
	fp, err := failpoint.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 1; i <= 5; i++ {
		fp.Hit(os.Getenv("FP_TEST_POINT"))
		fmt.Printf("after %d\n", i)
	}
	os.Exit(0)
}

type child struct {
	cmd    *exec.Cmd
	notify *bufio.Reader
	pipe   *os.File
	stdout bytes.Buffer // read only after cmd.Wait
}

// startChild runs the helper with the failpoint spec armed and a notify
// pipe on fd 3.
func startChild(t *testing.T, spec, point string) *child {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{pipe: r, notify: bufio.NewReader(r)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	c.cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "GORACE=atexit_sleep_ms=0",
		failpoint.EnvVar+"="+spec, failpoint.NotifyFDEnvVar+"=3", "FP_TEST_POINT="+point)
	c.cmd.ExtraFiles = []*os.File{w}
	c.cmd.Stdout = &c.stdout
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		r.Close()
	})
	return c
}

// readNotify returns the next failpoint name the child reported, or io.EOF.
func (c *child) readNotify(t *testing.T) (string, error) {
	t.Helper()
	if err := c.pipe.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	line, err := c.notify.ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("no failpoint notification within %v", hangGuard)
	}
	return strings.TrimSuffix(line, "\n"), err
}

func (c *child) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.cmd.Wait()
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		_ = c.cmd.Process.Kill()
		<-done
		t.Fatalf("child did not exit within %v", hangGuard)
	}
	return c.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// waitStopped waits until the child is stopped, without consuming any
// wait status (WNOWAIT) and without ever reporting an exit (no WEXITED).
func (c *child) waitStopped(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(time.Millisecond) {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, c.cmd.Process.Pid, &info, unix.WSTOPPED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil {
			t.Fatalf("waitid: %v", err)
		}
		if info.Signo == int32(unix.SIGCHLD) && info.Code == cldStopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child not stopped within %v", hangGuard)
		}
	}
}

func TestKill(t *testing.T) {
	c := startChild(t, "other=stop,fp.test.point=kill", "fp.test.point")
	if name, err := c.readNotify(t); err != nil || name != "fp.test.point" {
		t.Fatalf("notify = %q, %v; want fp.test.point", name, err)
	}
	ws := c.wait(t)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("wait status %v: want killed by SIGKILL", ws)
	}
	if strings.Contains(c.stdout.String(), "after") {
		t.Fatalf("child ran past the kill point: %q", c.stdout.String())
	}
}

func TestKillOnNthHit(t *testing.T) {
	c := startChild(t, "p=kill@3", "p")
	if name, err := c.readNotify(t); err != nil || name != "p" {
		t.Fatalf("notify = %q, %v", name, err)
	}
	if ws := c.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("wait status %v: want killed by SIGKILL", ws)
	}
	if got, want := c.stdout.String(), "after 1\nafter 2\n"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
}

func TestStop(t *testing.T) {
	c := startChild(t, "p=stop@2", "p")
	if name, err := c.readNotify(t); err != nil || name != "p" {
		t.Fatalf("notify = %q, %v", name, err)
	}
	c.waitStopped(t)
	time.Sleep(20 * time.Millisecond)
	c.waitStopped(t) // still stopped: nothing resumes it but SIGCONT
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if ws := c.wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("wait status %v: want exit 0 after SIGCONT", ws)
	}
	if got := strings.Count(c.stdout.String(), "after"); got != 5 {
		t.Fatalf("stdout = %q: want 5 lines", c.stdout.String())
	}
}

func TestExit(t *testing.T) {
	c := startChild(t, "p=exit(7)@4", "p")
	if ws := c.wait(t); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("wait status %v: want exit 7", ws)
	}
	if got, want := c.stdout.String(), "after 1\nafter 2\nafter 3\n"; got != want {
		t.Fatalf("stdout = %q, want %q", got, want)
	}
}

func TestDisarmed(t *testing.T) {
	for _, spec := range []string{"", "other.point=kill"} {
		c := startChild(t, spec, "p")
		if ws := c.wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
			t.Fatalf("spec %q: wait status %v: want exit 0", spec, ws)
		}
		if name, err := c.readNotify(t); err != io.EOF {
			t.Fatalf("spec %q: notify = %q, %v; want nothing", spec, name, err)
		}
		if got := strings.Count(c.stdout.String(), "after"); got != 5 {
			t.Fatalf("spec %q: stdout = %q: want 5 lines", spec, c.stdout.String())
		}
	}
}

func TestNilAndArmed(t *testing.T) {
	var s *failpoint.Set
	s.Hit("x") // must not panic
	if s.Armed("x") || s.String() != "" {
		t.Fatal("nil Set must be disarmed")
	}
	s, err := failpoint.Parse("a.b=sleep(1ms),c=kill@2")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Armed("a.b") || !s.Armed("c") || s.Armed("d") {
		t.Fatal("Armed wrong")
	}
	s.Hit("d") // not armed: nothing
	s.Hit("c") // first hit of kill@2: nothing
	start := time.Now()
	s.Hit("a.b") // sleeps
	if time.Since(start) < time.Millisecond {
		t.Fatal("sleep action did not sleep")
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  ", ""},
		{"a=kill", "a=kill"},
		{" z.y=stop@3 , a-b/c_d=kill ", "a-b/c_d=kill,z.y=stop@3"},
		{"x=exit", "x=exit"},
		{"x=exit(3)", "x=exit"},
		{"x=exit(0)@1", "x=exit(0)@1"},
		{"s=sleep(50ms)", "s=sleep(50ms)"},
		{"s=sleep(1.5s)@2", "s=sleep(1.5s)@2"},
	} {
		s, err := failpoint.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := s.String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		again, err := failpoint.Parse(s.String())
		if err != nil || again.String() != s.String() {
			t.Errorf("round trip of %q: %q, %v", s.String(), again.String(), err)
		}
	}
	for _, in := range []string{
		"a", "=kill", "a=", "a=boom", "a=kill@0", "a=kill@x", "a=kill(1)", "a=sleep",
		"a=sleep(x)", "a=sleep(-1s)", "a=exit(256)", "a=exit(1", "a b=kill", "a=kill,a=stop", "a=kill,",
	} {
		_, err := failpoint.Parse(in)
		var pe *failpoint.ParseError
		if !errors.Is(err, failpoint.ErrSyntax) || !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error = %v, want *ParseError wrapping ErrSyntax", in, err)
		}
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(failpoint.EnvVar, "")
	if s, err := failpoint.FromEnv(); s != nil || err != nil {
		t.Fatalf("FromEnv() unset = %v, %v; want nil, nil", s, err)
	}
	t.Setenv(failpoint.EnvVar, "a=nope")
	if _, err := failpoint.FromEnv(); !errors.Is(err, failpoint.ErrSyntax) {
		t.Fatalf("FromEnv() bad spec error = %v, want ErrSyntax", err)
	}
	t.Setenv(failpoint.EnvVar, "a=kill")
	for _, fd := range []string{"x", "-1", "987654"} {
		t.Setenv(failpoint.NotifyFDEnvVar, fd)
		if _, err := failpoint.FromEnv(); !errors.Is(err, failpoint.ErrNotifyFD) {
			t.Errorf("FromEnv() notify fd %q error = %v, want ErrNotifyFD", fd, err)
		}
	}
}

func BenchmarkHitDisarmed(b *testing.B) {
	var s *failpoint.Set
	for b.Loop() {
		s.Hit("arena.init.mid")
	}
}

func BenchmarkHitNotArmed(b *testing.B) {
	s, _ := failpoint.Parse("other=kill")
	for b.Loop() {
		s.Hit("arena.init.mid")
	}
}
