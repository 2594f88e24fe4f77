package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// TestPrefork builds the example, runs it with a simulated cluster and two
// workers, queries both endpoints, then interrupts it and checks that it
// exits cleanly and leaves no segment behind.
func TestPrefork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary")
	}
	bin := filepath.Join(t.TempDir(), "prefork")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var key arena.Key
	for {
		key = arena.MakeKey(arena.ClassTest, uint16(rand.IntN(0x1000)))
		if _, err := arena.StatOf(arena.SysV(key)); errors.Is(err, arena.ErrNotFound) {
			break
		}
	}
	loc := arena.SysV(key)
	t.Cleanup(func() { arena.Remove(loc, arena.RemoveOptions{Force: true}) })

	cmd := exec.Command(bin, "-sim", "3", "-workers", "2", "-addr", "127.0.0.1:0",
		"-shm-key", fmt.Sprintf("%#x", uint32(key)), "-tend-interval", "100ms", "-takeover-threshold", "1s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no address: %v\n%s", err, stderr.String())
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	base := "http://" + addr

	var route struct {
		NS, Set, Key string
		Digest       []int
		PartitionID  uint32 `json:"partition_id"`
		Master       *struct {
			Name      string
			Addresses []string
		}
		Replicas []struct{ Name string }
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/route/test/demo/myTestKey")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			if ok {
				err = json.NewDecoder(resp.Body).Decode(&route)
			}
			resp.Body.Close()
			if ok && err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []int{149, 186, 200, 254, 138, 5, 9, 52, 115, 70, 1, 194, 131, 184, 51, 95, 232, 241, 179, 74}
	if !slices.Equal(route.Digest, want) || route.PartitionID != 2709 {
		t.Errorf("route: digest %v partition %d, want %v and 2709", route.Digest, route.PartitionID, want)
	}
	if route.Master == nil || route.Master.Name == "" || len(route.Master.Addresses) == 0 || len(route.Replicas) != 1 {
		t.Errorf("route: %+v", route)
	}

	roles := map[string]bool{}
	for range 20 {
		resp, err := http.Get(base + "/stats")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Role     string
			OwnerPID int
			Tends    uint64
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.OwnerPID == 0 || st.Tends == 0 {
			t.Fatalf("stats: %+v %v", st, err)
		}
		roles[st.Role] = true
	}
	t.Logf("roles seen: %v", roles)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGINT\n%s", stderr.String())
	}
	out := stderr.String()
	if n := strings.Count(out, "worker exiting"); n != 2 {
		t.Errorf("%d workers exited cleanly, want 2\n%s", n, out)
	}
	if !strings.Contains(out, "tend: released lease") {
		t.Errorf("owner did not release the lease\n%s", out)
	}
	if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
		t.Errorf("segment left behind: %v", err)
	}
}
