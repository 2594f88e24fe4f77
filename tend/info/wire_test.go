package info

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 255, 256, 1 << 20, MaxBodyLen} {
		h := Header{Version: ProtoVersion, Type: TypeInfo, Length: n}
		if got := DecodeHeader(h.Encode()); got != h {
			t.Fatalf("round trip of %+v = %+v", h, got)
		}
	}
	b := Header{Version: 2, Type: 1, Length: 0x010203040506}.Encode()
	want := [8]byte{2, 1, 1, 2, 3, 4, 5, 6}
	if b != want {
		t.Fatalf("Encode = %v, want %v", b, want)
	}
}

func TestRequestFraming(t *testing.T) {
	msg, err := AppendRequest(nil, "node", "partition-generation", "replicas")
	if err != nil {
		t.Fatal(err)
	}
	body := "node\npartition-generation\nreplicas\n"
	want := append([]byte{2, 1, 0, 0, 0, 0, 0, byte(len(body))}, body...)
	if !bytes.Equal(msg, want) {
		t.Fatalf("request = %q, want %q", msg, want)
	}
	got, err := ReadMessage(bytes.NewReader(msg), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if names := ParseRequest(got); !reflect.DeepEqual(names, []string{"node", "partition-generation", "replicas"}) {
		t.Fatalf("ParseRequest = %q", names)
	}
}

func TestRequestRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "a\nb", "a\tb"} {
		if _, err := AppendRequest(nil, "node", name); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("AppendRequest(%q) err = %v, want ErrInvalidCommand", name, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	var body []byte
	body = AppendReplyLine(body, "node", "BB9020011AC4202")
	body = AppendReplyLine(body, "partition-generation", "7")
	body = AppendReplyLine(body, "features", "")
	body = append(body, "services\n"...) // name only, no tab
	msg, err := AppendMessage(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadReply(bytes.NewReader(msg), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"node": "BB9020011AC4202", "partition-generation": "7", "features": "", "services": ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reply = %v, want %v", got, want)
	}
}

func TestParseReplyEdgeCases(t *testing.T) {
	cases := []struct {
		body string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"\n\n", map[string]string{}},
		{"a\tb", map[string]string{"a": "b"}},             // no final newline
		{"a\tb\tc\n", map[string]string{"a": "b\tc"}},     // value keeps later tabs
		{"a\t\nb\n", map[string]string{"a": "", "b": ""}}, // both empty forms
	}
	for _, c := range cases {
		got, err := ParseReply([]byte(c.body))
		if err != nil {
			t.Fatalf("ParseReply(%q): %v", c.body, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("ParseReply(%q) = %v, want %v", c.body, got, c.want)
		}
	}
	_, err := ParseReply([]byte("a\tb\n\tc\n"))
	var pe *ParseError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &pe) || pe.Offset != 4 {
		t.Fatalf("empty name: err = %v, want ErrMalformed at offset 4", err)
	}
}

func TestReadMessageErrors(t *testing.T) {
	valid, _ := AppendMessage(nil, []byte("node\tA\n"))
	huge := Header{Version: 2, Type: 1, Length: 1 << 40}.Encode()
	cases := []struct {
		name string
		in   []byte
		max  int
		kind error
	}{
		{"bad version", append([]byte{3, 1}, valid[2:]...), 0, ErrBadHeader},
		{"bad type", append([]byte{2, 3}, valid[2:]...), 0, ErrBadHeader},
		{"too large", huge[:], 0, ErrTooLarge},
		{"over custom limit", valid, 3, ErrTooLarge},
		{"short header", valid[:5], 0, ErrTruncated},
		{"short body", valid[:len(valid)-2], 0, ErrTruncated},
		{"header only", valid[:8], 0, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadMessage(bytes.NewReader(c.in), c.max, nil)
			if !errors.Is(err, c.kind) {
				t.Fatalf("err = %v, want %v", err, c.kind)
			}
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("err %T is not a *FrameError", err)
			}
		})
	}
	if _, err := ReadMessage(bytes.NewReader(nil), 0, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: err = %v, want io.EOF", err)
	}
}

// A header announcing a huge body must be rejected before allocation.
func TestReadMessageDoesNotAllocateAnnouncedSize(t *testing.T) {
	h := Header{Version: 2, Type: 1, Length: MaxBodyLen}.Encode()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadMessage(bytes.NewReader(h[:]), 0, nil); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("%d bytes allocated for 10 rejected headers", d)
	}
}

func TestReadMessageReusesBuffer(t *testing.T) {
	msg, _ := AppendMessage(nil, []byte("a\tb\n"))
	buf := make([]byte, 0, 64)
	body, err := ReadMessage(bytes.NewReader(msg), 0, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &body[0] != &buf[:1][0] {
		t.Fatal("buffer not reused")
	}
}
