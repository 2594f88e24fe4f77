package procid

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	tail := " 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
	for _, tc := range []struct {
		name, comm string
		state      byte
	}{
		{"plain", "(sleep)", 'S'},
		{"spaces and parens in comm", "(a) b) (c d)", 'Z'},
		{"empty comm", "()", 'R'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := "4242 " + tc.comm + " " + string(tc.state) + tail + "\n"
			st, err := parseStat([]byte(line))
			if err != nil {
				t.Fatalf("parseStat(%q): %v", line, err)
			}
			if st.state != tc.state || st.startTime != 987654 {
				t.Fatalf("parseStat = %+v, want state %c start 987654", st, tc.state)
			}
		})
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S" + strings.Repeat(" 1", 18) + " notanumber"} {
		if _, err := parseStat([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseStat(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestParseBootID(t *testing.T) {
	id, err := parseBootID("a0defbf3-6159-4a3a-ad98-8b3fc837feda\n")
	if err != nil {
		t.Fatal(err)
	}
	want := [16]byte{0xa0, 0xde, 0xfb, 0xf3, 0x61, 0x59, 0x4a, 0x3a, 0xad, 0x98, 0x8b, 0x3f, 0xc8, 0x37, 0xfe, 0xda}
	if id != want {
		t.Fatalf("parseBootID = %x, want %x", id, want)
	}
	for _, bad := range []string{"", "a0defbf361594a3aad988b3fc837feda", "z0defbf3-6159-4a3a-ad98-8b3fc837feda"} {
		if _, err := parseBootID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseBootID(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}
