package procid_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/procid"
)

func openReg(t *testing.T, path string) *procid.Registry {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r := procid.NewRegistry(f, true)
	t.Cleanup(func() { r.Close() })
	return r
}

// Two registrants on two opens of one lock file see each other's slots;
// a closed registrant's slot reads free.
func TestRegistrySlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	r1, r2 := openReg(t, path), openReg(t, path)
	s1, err := r1.Register()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := r1.Register(); again != s1 || r1.Slot() != s1 {
		t.Fatalf("Register again = %d, Slot %d; want %d", again, r1.Slot(), s1)
	}
	s2, err := r2.Register()
	if err != nil {
		t.Fatal(err)
	}
	if s1 == 0 || s2 == 0 || s1 == s2 {
		t.Fatalf("slots %d and %d: want two distinct non-zero slots", s1, s2)
	}
	for _, tc := range []struct {
		r    *procid.Registry
		s    procid.Slot
		held bool
	}{{r2, s1, true}, {r1, s2, true}, {r1, s1, true}} {
		if h, err := tc.r.Held(tc.s); err != nil || h != tc.held {
			t.Errorf("Held(%d) = %v, %v; want %v", tc.s, h, err, tc.held)
		}
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err := r2.Held(s1); err != nil || h {
		t.Errorf("Held(%d) after its registrant closed = %v, %v; want free", s1, h, err)
	}
	if lv, why := r2.Judge(procid.Claimant{Slot: s1}, mustSelf(t)); lv != procid.Dead || why != procid.ReasonSlotFree {
		t.Errorf("Judge of a released slot = %v (%s), want dead (%s)", lv, why, procid.ReasonSlotFree)
	}
	if _, err := r2.Held(0); err == nil {
		t.Error("Held(0) accepted the no-slot value")
	}
}

// TestRegistryHelperProcess is not a test: it registers on the lock file
// named by SHMKIT_REGISTRY_FILE, prints its slot and sleeps until killed.
func TestRegistryHelperProcess(t *testing.T) {
	path := os.Getenv("SHMKIT_REGISTRY_FILE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		os.Exit(2)
	}
	s, err := procid.NewRegistry(f, true).Register()
	if err != nil {
		os.Exit(3)
	}
	fmt.Println(s)
	time.Sleep(time.Minute)
	os.Exit(0)
}

// A slot held by a live process reads held; killed, it reads free at once,
// while the process is still an unreaped zombie.
func TestRegistryAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	r := openReg(t, path)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRegistryHelperProcess$")
	cmd.Env = append(os.Environ(), "SHMKIT_REGISTRY_FILE="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper printed no slot: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	slot := procid.Slot(n)
	self := mustSelf(t)
	child, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	c := procid.Claimant{Slot: slot, ID: child}
	if lv, why := r.Judge(c, self); lv != procid.Alive {
		t.Fatalf("live helper judged %v (%s)", lv, why)
	}
	// Only the slot: no pid evidence at all, yet the held lock says alive.
	if lv, _ := r.Judge(procid.Claimant{Slot: slot}, self); lv != procid.Alive {
		t.Fatalf("live helper's slot alone judged %v", lv)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		h, err := r.Held(slot)
		if err != nil {
			t.Fatal(err)
		}
		if !h {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed helper's slot is still held")
		}
		time.Sleep(time.Millisecond)
	}
	if lv, why := r.Judge(procid.Claimant{Slot: slot}, self); lv != procid.Dead || why != procid.ReasonSlotFree {
		t.Errorf("killed helper judged %v (%s), want dead (%s)", lv, why, procid.ReasonSlotFree)
	}
}

// The judgement's pid rules: a bare pid proves death only in our own PID
// namespace (pidfd_open/kill ESRCH); anything else is unknown.
func TestJudgePIDRules(t *testing.T) {
	self := mustSelf(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	live := startChild(t)
	var none *procid.Registry // no lock file: pid evidence only
	for _, tc := range []struct {
		name string
		c    procid.Claimant
		want procid.Liveness
	}{
		{"gone pid of our namespace", procid.Claimant{ID: procid.Identity{PID: uint32(gone.Process.Pid), PIDNS: self.PIDNS}}, procid.Dead},
		{"gone pid of an unknown namespace", procid.Claimant{ID: procid.Identity{PID: uint32(gone.Process.Pid)}}, procid.Unknown},
		{"gone pid of another namespace", procid.Claimant{ID: procid.Identity{PID: uint32(gone.Process.Pid), PIDNS: self.PIDNS + 1}}, procid.Unknown},
		{"live pid of our namespace", procid.Claimant{ID: procid.Identity{PID: uint32(live.Process.Pid), PIDNS: self.PIDNS}}, procid.Unknown},
		{"slot without a registry", procid.Claimant{Slot: 7}, procid.Unknown},
		{"nothing recorded", procid.Claimant{}, procid.Unknown},
	} {
		if lv, why := none.Judge(tc.c, self); lv != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, lv, why, tc.want)
		}
	}
}

// TestForeignProcHelper is not a test: run as pid 1 of a new PID namespace
// that shares the parent's /proc, it judges its own identity and prints
// the verdict.
func TestForeignProcHelper(t *testing.T) {
	if os.Getenv("SHMKIT_FOREIGN_PROC") != "1" {
		return
	}
	self, err := procid.Self()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(0)
	}
	lv, why := self.CheckFrom(self)
	// What /proc/<our pid> says: another process's start time, which the
	// old rule took for proof that our pid was reused.
	other, err := procid.Of(int(self.PID))
	fmt.Printf("%d %s|%s|%v\n", self.PID, lv, why, err == nil && other.StartTime != self.StartTime)
	os.Exit(0)
}

// In a PID namespace without a /proc of its own, /proc/<pid> names another
// process (here /proc/1 is the host's init): its start time must not be
// taken as proof that the pid was reused. The process judging itself must
// not find itself dead.
func TestCheckFromForeignProc(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestForeignProcHelper$")
	cmd.Env = append(os.Environ(), "SHMKIT_FOREIGN_PROC=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot run a process in a new PID namespace here: %v", err)
	}
	got := strings.TrimSpace(string(out))
	if !strings.HasPrefix(got, "1 ") {
		t.Fatalf("helper said %q, want it to run as pid 1", got)
	}
	// The last field is the negative control: /proc/1 there is another
	// process, so a rule reading /proc would have called us dead.
	if want := "1 " + procid.Unknown.String() + "|" + string(procid.ReasonForeignProc) + "|true"; got != want {
		t.Errorf("self-judgement in a PID namespace sharing our /proc = %q, want %q", got, want)
	}
}
