package arenatest

import (
	"errors"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// WantProblem fails t unless err is an *arena.CheckError (wrapping
// arena.ErrDamaged) one of whose problems contains want; want "" asks for
// no error at all. It returns the problems.
func WantProblem(t testing.TB, err error, want string) []string {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("check: %v", err)
		}
		return nil
	}
	var ce *arena.CheckError
	if !errors.As(err, &ce) || !errors.Is(err, arena.ErrDamaged) {
		t.Fatalf("check = %v, want an *arena.CheckError", err)
	}
	if !strings.Contains(strings.Join(ce.Problems, "\n"), want) {
		t.Errorf("problems %q do not mention %q", ce.Problems, want)
	}
	return ce.Problems
}
