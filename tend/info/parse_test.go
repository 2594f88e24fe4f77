package info

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/partmap"
)

// wantKind checks err wraps kind and is a *ParseError.
func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err %T is not a *ParseError", err)
	}
}

func TestParseNode(t *testing.T) {
	for _, v := range []string{"BB9020011AC4202", "bb9020011ac4202", "A", "0123456789ABCDEF"} {
		got, err := ParseNode(v)
		if err != nil || got != v {
			t.Fatalf("ParseNode(%q) = %q, %v", v, got, err)
		}
	}
	bad := []struct {
		v    string
		kind error
	}{
		{"", ErrMalformed},
		{"0123456789ABCDEF0", ErrMalformed},
		{"BB90-0011AC4202", ErrMalformed},
		{"BB9020011AC420G", ErrMalformed},
		{"ERROR::not ready", ErrServer},
		{"error", ErrServer},
	}
	for _, c := range bad {
		_, err := ParseNode(c.v)
		wantKind(t, err, c.kind)
	}
}

func TestParseGeneration(t *testing.T) {
	good := map[string]int64{"0": 0, "1": 1, "007": 7, "-1": GenerationUnknown, "9223372036854775807": 1<<63 - 1}
	for v, want := range good {
		got, err := ParseGeneration(CmdPartitionGeneration, v)
		if err != nil || got != want {
			t.Fatalf("ParseGeneration(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	bad := []struct {
		v    string
		kind error
	}{
		{"", ErrMalformed},
		{"-2", ErrMalformed},
		{"+1", ErrMalformed},
		{"1 ", ErrMalformed},
		{"0x10", ErrMalformed},
		{"9223372036854775808", ErrOutOfRange},
		{"99999999999999999999999", ErrOutOfRange},
		{"ERROR:4:bad", ErrServer},
	}
	for _, c := range bad {
		_, err := ParseGeneration(CmdPeersGeneration, c.v)
		wantKind(t, err, c.kind)
		var pe *ParseError
		errors.As(err, &pe)
		if pe.Command != CmdPeersGeneration {
			t.Fatalf("Command = %q", pe.Command)
		}
	}
}

func TestParseBuild(t *testing.T) {
	good := map[string]Version{
		"8.1.0.0":      {Major: 8, Minor: 1},
		"4.9.0.3":      {Major: 4, Minor: 9, Build: 3},
		"7.2.0.1-rc1":  {Major: 7, Minor: 2, Build: 1, Suffix: "-rc1"},
		"6":            {Major: 6},
		"5.7.0":        {Major: 5, Minor: 7},
		"8.0.0.10_dev": {Major: 8, Build: 10, Suffix: "_dev"},
	}
	for v, want := range good {
		got, err := ParseBuild(v)
		if err != nil || got != want {
			t.Fatalf("ParseBuild(%q) = %+v, %v; want %+v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "x", "8..1", "8.1a", ".8", "8.1.0.0.0"} {
		_, err := ParseBuild(v)
		wantKind(t, err, ErrMalformed)
	}
	_, err := ParseBuild("99999999999.1")
	wantKind(t, err, ErrOutOfRange)
	v, _ := ParseBuild("4.9.0.3")
	if !v.AtLeast(4, 9, 0, 3) || v.AtLeast(4, 9, 0, 4) || v.Compare(Version{Major: 5}) != -1 {
		t.Fatal("version comparison wrong")
	}
	if s := v.String(); s != "4.9.0.3" {
		t.Fatalf("String = %q", s)
	}
}

func TestParseClusterNameFeaturesRacks(t *testing.T) {
	if n, err := ParseClusterName("prod-east"); err != nil || n != "prod-east" {
		t.Fatalf("ParseClusterName = %q, %v", n, err)
	}
	_, err := ParseClusterName("a\x01b")
	wantKind(t, err, ErrMalformed)
	f, err := ParseFeatures("peers;replicas;;pscans")
	if err != nil || !reflect.DeepEqual(f, []string{"peers", "replicas", "pscans"}) {
		t.Fatalf("ParseFeatures = %v, %v", f, err)
	}
	r, err := ParseRackIDs("test:1;bar:0")
	if err != nil || !reflect.DeepEqual(r, map[string]int{"test": 1, "bar": 0}) {
		t.Fatalf("ParseRackIDs = %v, %v", r, err)
	}
	_, err = ParseRackIDs("test")
	wantKind(t, err, ErrMalformed)
	_, err = ParseRackIDs("test:x")
	wantKind(t, err, ErrMalformed)
	_, err = ParseRackIDs("ERROR::enterprise-only")
	wantKind(t, err, ErrServer)
}

func TestParseServices(t *testing.T) {
	got, err := ParseServices(CmdServiceClearStd, "10.0.0.1:3000,[2001:db8::1]:3100,host-a", 3000)
	if err != nil {
		t.Fatal(err)
	}
	want := []HostPort{{"10.0.0.1", 3000}, {"2001:db8::1", 3100}, {"host-a", 3000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseServices = %v, want %v", got, want)
	}
	if s := FormatServices(want); s != "10.0.0.1:3000,[2001:db8::1]:3100,host-a:3000" {
		t.Fatalf("FormatServices = %q", s)
	}
	legacy, err := ParseServices("services", "172.17.0.3:3000;172.17.0.4:3000", 0)
	if err != nil || len(legacy) != 2 {
		t.Fatalf("legacy services = %v, %v", legacy, err)
	}
	if empty, err := ParseServices(CmdServiceClearStd, "", 0); err != nil || len(empty) != 0 {
		t.Fatalf("empty = %v, %v", empty, err)
	}
	bad := []struct {
		v    string
		kind error
	}{
		{"10.0.0.1", ErrMalformed},    // no port, no default
		{"10.0.0.1:0", ErrOutOfRange}, // port 0
		{"10.0.0.1:70000", ErrOutOfRange},
		{"10.0.0.1:x", ErrMalformed},
		{"::1:3000", ErrMalformed}, // unbracketed IPv6
		{"[::1", ErrTruncated},
		{"[zz]:1", ErrMalformed},
		{"[10.0.0.1]:1", ErrMalformed}, // brackets are for IPv6 only
		{"a:1,", ErrTruncated},
		{",a:1", ErrMalformed},
		{"a b:1", ErrMalformed},
		{":3000", ErrMalformed},
	}
	for _, c := range bad {
		_, err := ParseServices(CmdServiceClearStd, c.v, 0)
		if !errors.Is(err, c.kind) {
			t.Errorf("ParseServices(%q) err = %v, want %v", c.v, err, c.kind)
		}
	}
}

func TestParsePeers(t *testing.T) {
	v := "10,3000,[[BB9050011AC4202,,[172.17.0.5]],[BB9070011AC4202,tls-b,[172.17.0.7:3100,[2001:db8::7],[::1]:4000]],[BB9080011AC4202,,[]]]"
	got, err := ParsePeers(CmdPeersClearStd, v)
	if err != nil {
		t.Fatal(err)
	}
	want := Peers{Generation: 10, DefaultPort: 3000, Peers: []Peer{
		{Name: "BB9050011AC4202", Hosts: []HostPort{{"172.17.0.5", 3000}}},
		{Name: "BB9070011AC4202", TLSName: "tls-b", Hosts: []HostPort{{"172.17.0.7", 3100}, {"2001:db8::7", 3000}, {"::1", 4000}}},
		{Name: "BB9080011AC4202", Hosts: []HostPort{}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParsePeers =\n%+v\nwant\n%+v", got, want)
	}
	if s := FormatPeers(want); s != v {
		t.Fatalf("FormatPeers =\n%s\nwant\n%s", s, v)
	}
	for _, v := range []string{"3,3000,[]", "3,,[]", "3,3000,"} {
		p, err := ParsePeers(CmdPeersTLSStd, v)
		if err != nil || p.Generation != 3 || len(p.Peers) != 0 {
			t.Fatalf("ParsePeers(%q) = %+v, %v", v, p, err)
		}
	}
}

func TestParsePeersErrors(t *testing.T) {
	bad := []struct {
		v    string
		kind error
	}{
		{"", ErrMalformed},
		{"1", ErrTruncated},
		{"1,3000", ErrTruncated},
		{"x,3000,[]", ErrMalformed},
		{"1,0,[]", ErrOutOfRange},
		{"1,65536,[]", ErrOutOfRange},
		{"1,3000,[", ErrTruncated},
		{"1,3000,[[", ErrMalformed}, // empty node name
		{"1,3000,[[A", ErrTruncated},
		{"1,3000,[[A,", ErrTruncated},
		{"1,3000,[[A,,", ErrTruncated},
		{"1,3000,[[A,,[", ErrMalformed}, // empty host
		{"1,3000,[[A,,[h", ErrTruncated},
		{"1,3000,[[A,,[h]", ErrTruncated},
		{"1,3000,[[A,,[h]]", ErrTruncated},
		{"1,3000,[[A,,[h]]]x", ErrMalformed}, // trailing data
		{"1,3000,[[A,,[h]];[B,,[]]]", ErrMalformed},
		{"1,3000,[[Z!,,[h]]]", ErrMalformed}, // bad node name
		{"1,3000,[[A,t[x,[h]]]", ErrMalformed},
		{"1,,[[A,,[h]]]", ErrMalformed}, // host without port and no default
		{"1,3000,[[A,,[h:0]]]", ErrOutOfRange},
		{"1,3000,[[A,,[2001:db8::1]]]", ErrMalformed},
		{"1,3000,[[A,,[[2001:db8::1]x]]]", ErrMalformed},
		{"1,3000,[A]", ErrMalformed},
		{"ERROR::no peers", ErrServer},
		{"1,3000,[[A,,[h]],]", ErrMalformed},
	}
	for _, c := range bad {
		_, err := ParsePeers(CmdPeersClearStd, c.v)
		if !errors.Is(err, c.kind) {
			t.Errorf("ParsePeers(%q) err = %v, want %v", c.v, err, c.kind)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(c.v) {
			t.Errorf("ParsePeers(%q): bad ParseError %+v", c.v, pe)
		}
	}
}

func bitmapWith(pids ...uint32) Bitmap {
	var b Bitmap
	for _, p := range pids {
		b.Set(p)
	}
	return b
}

func TestBitmap(t *testing.T) {
	b := bitmapWith(0, 7, 8, 4095)
	if b[0] != 0x81 || b[1] != 0x80 || b[511] != 0x01 {
		t.Fatalf("bit layout wrong: %x %x %x", b[0], b[1], b[511])
	}
	if !b.Has(7) || b.Has(6) || b.Has(4096) || b.Count() != 4 {
		t.Fatal("Has/Count wrong")
	}
	b.Clear(7)
	b.Set(5000) // ignored
	b.Clear(5000)
	if b.Has(7) || b.Count() != 3 {
		t.Fatal("Clear wrong")
	}
	if n := len(b.Base64()); n != 684 {
		t.Fatalf("base64 length %d", n)
	}
}

func TestParseReplicasRoundTrip(t *testing.T) {
	in := []NamespaceReplicas{
		{Namespace: "test", Regime: 0, ReplicaCount: 2, Bitmaps: []Bitmap{bitmapWith(0, 1, 2709), bitmapWith(3, 4095)}},
		{Namespace: "sc", Regime: 7, ReplicaCount: 1, Bitmaps: []Bitmap{bitmapWith(100)}},
	}
	v := FormatReplicas(in)
	got, err := ParseReplicas(v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatal("replicas round trip differs")
	}
	// A trailing ';' is tolerated.
	if got, err := ParseReplicas(v + ";"); err != nil || len(got) != 2 {
		t.Fatalf("trailing ';': %v, %v", len(got), err)
	}
	// replicas-all has no regime.
	all, err := ParseReplicasAll(FormatReplicasAll(in))
	if err != nil || all[1].Regime != 0 || !reflect.DeepEqual(all[1].Bitmaps, in[1].Bitmaps) {
		t.Fatalf("replicas-all: %+v, %v", all, err)
	}
	if got, err := ParseReplicas(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
}

func TestParseReplicasErrors(t *testing.T) {
	bm := bitmapWith(1)
	b64 := bm.Base64()
	short := b64[:len(b64)-4] // 508 bytes
	bad := []struct {
		name string
		v    string
		kind error
	}{
		{"no colon", "test", ErrTruncated},
		{"empty namespace", ":1,1," + b64, ErrMalformed},
		{"long namespace", strings.Repeat("n", 32) + ":1,1," + b64, ErrMalformed},
		{"bad regime", "test:x,1," + b64, ErrMalformed},
		{"regime overflow", "test:4294967296,1," + b64, ErrOutOfRange},
		{"missing count", "test:1", ErrTruncated},
		{"zero count", "test:1,0", ErrOutOfRange},
		{"huge count", "test:1,100000," + b64, ErrOutOfRange},
		{"fewer bitmaps", "test:1,2," + b64, ErrTruncated},
		{"fewer bitmaps then ns", "test:1,2," + b64 + ";bar:1,1," + b64, ErrTruncated},
		{"more bitmaps", "test:1,1," + b64 + "," + b64, ErrMalformed},
		{"short bitmap", "test:1,1," + short, ErrMalformed},
		{"long bitmap", "test:1,1," + b64 + "AAAA", ErrMalformed},
		{"bad base64", "test:1,1," + strings.Repeat("!", len(b64)), ErrMalformed},
		{"empty bitmap", "test:1,1,", ErrMalformed},
		{"duplicate ns", "test:1,1," + b64 + ";test:1,1," + b64, ErrMalformed},
		{"comma in ns", "te,st:1,1," + b64, ErrMalformed},
		{"server error", "ERROR::busy", ErrServer},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseReplicas(c.v)
			wantKind(t, err, c.kind)
		})
	}
}

func TestPartitionsMatchesPartmap(t *testing.T) {
	if Partitions != partmap.Partitions {
		t.Fatalf("info.Partitions = %d, partmap.Partitions = %d", Partitions, partmap.Partitions)
	}
}

// TestReplicasUnpaddedBitmap: 684 base64 characters without padding decode
// to 513 bytes; the parser must say so instead of letting base64 write past
// a 512-byte bitmap (found by FuzzParseReplicas).
func TestReplicasUnpaddedBitmap(t *testing.T) {
	v := "test:0,1," + strings.Repeat("0", 684)
	if _, err := ParseReplicas(v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("want ErrMalformed, got %v", err)
	}
}
