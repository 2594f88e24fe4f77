package harness

import (
	"slices"
	"testing"
)

func TestChildEnvGORACE(t *testing.T) {
	t.Setenv("GORACE", "")
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "GORACE=atexit_sleep_ms=0"},
		{[]string{"GORACE=halt_on_error=1"}, "GORACE=halt_on_error=1 atexit_sleep_ms=0"},
		{[]string{"GORACE=atexit_sleep_ms=5"}, "GORACE=atexit_sleep_ms=5"},
	} {
		env := childEnv(tc.extra)
		var last string
		for _, kv := range env {
			if len(kv) > 7 && kv[:7] == "GORACE=" {
				last = kv
			}
		}
		if last != tc.want {
			t.Errorf("childEnv(%q): effective %q, want %q", tc.extra, last, tc.want)
		}
		if !slices.Contains(env, EnvHelper+"=1") {
			t.Errorf("childEnv(%q) lacks %s", tc.extra, EnvHelper)
		}
	}
}
