// Package fuzz holds the fuzz targets for shmkit's info-protocol parsers
// and framing. Run one with, for example,
//
//	go test ./fuzz -run '^$' -fuzz FuzzParseReplicas -fuzztime 30s
package fuzz

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/tend/info"
)

// errorKinds are the sentinel kinds a parser may return.
var errorKinds = []error{info.ErrMalformed, info.ErrTruncated, info.ErrOutOfRange, info.ErrServer}

// checkParseError asserts err is a *ParseError of a known kind whose offset
// lies inside the input.
func checkParseError(t *testing.T, err error, input string) {
	t.Helper()
	var pe *info.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v is not a *info.ParseError", err, err)
	}
	known := false
	for _, k := range errorKinds {
		if errors.Is(err, k) {
			known = true
		}
	}
	if !known {
		t.Fatalf("error %v wraps no known kind", err)
	}
	if pe.Offset < 0 || pe.Offset > len(input) {
		t.Fatalf("offset %d outside input of %d bytes", pe.Offset, len(input))
	}
}

func bitmapB64(pids ...uint32) string {
	var b info.Bitmap
	for _, p := range pids {
		b.Set(p)
	}
	return b.Base64()
}

func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{
		"10,3000,[[BB9050011AC4202,,[172.17.0.5]],[BB9070011AC4202,,[172.17.0.7]]]",
		"3,3101,[[BB9000100000000,,[127.0.0.1:3102]],[BB9000200000000,,[127.0.0.1]]]",
		"7,4333,[[BB9020011AC4202,tls-a,[[2001:db8::1]:4333,[::1]]]]",
		"0,,[]",
		"1,3000,",
		"1,3000,[[A,,[]]]",
		"ERROR::not found",
		"1,3000,[[A,,[h:0]]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := info.ParsePeers(info.CmdPeersClearStd, v)
		if err != nil {
			checkParseError(t, err, v)
			return
		}
		if p.Generation < 0 {
			t.Fatalf("negative generation %d", p.Generation)
		}
		if p.DefaultPort < 0 || p.DefaultPort > 65535 {
			t.Fatalf("default port %d", p.DefaultPort)
		}
		for _, peer := range p.Peers {
			if _, err := info.ParseNode(peer.Name); err != nil {
				t.Fatalf("peer name %q accepted but invalid: %v", peer.Name, err)
			}
			for _, h := range peer.Hosts {
				if h.Port < 1 || h.Port > 65535 || h.Host == "" {
					t.Fatalf("bad host %+v", h)
				}
			}
		}
		// Formatting and parsing again must give the same value.
		again, err := info.ParsePeers(info.CmdPeersClearStd, info.FormatPeers(p))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", info.FormatPeers(p), err)
		}
		if info.FormatPeers(again) != info.FormatPeers(p) {
			t.Fatalf("round trip differs: %q vs %q", info.FormatPeers(again), info.FormatPeers(p))
		}
	})
}

func FuzzParseReplicas(f *testing.F) {
	b1 := bitmapB64(0, 1, 2709, 4095)
	b2 := bitmapB64(3, 100)
	for _, s := range []string{
		"test:0,2," + b1 + "," + b2 + ";bar:0,1," + b2,
		"sc:7,1," + b1,
		"test:0,1," + b1 + ";",
		"",
		"test:0,2," + b1,
		"test:0,1," + b1[:100],
		"test:1,0",
		"ERROR::unavailable",
	} {
		f.Add(s, true)
	}
	f.Add("test:2,"+b1+","+b2, false)
	f.Fuzz(func(t *testing.T, v string, withRegime bool) {
		parse := info.ParseReplicas
		format := info.FormatReplicas
		if !withRegime {
			parse = info.ParseReplicasAll
			format = info.FormatReplicasAll
		}
		nss, err := parse(v)
		if err != nil {
			checkParseError(t, err, v)
			return
		}
		seen := map[string]bool{}
		for _, ns := range nss {
			if ns.Namespace == "" || len(ns.Namespace) > info.MaxNamespaceLen || strings.ContainsAny(ns.Namespace, ":;,") {
				t.Fatalf("bad namespace %q", ns.Namespace)
			}
			if seen[ns.Namespace] {
				t.Fatalf("duplicate namespace %q", ns.Namespace)
			}
			seen[ns.Namespace] = true
			if ns.ReplicaCount < 1 || ns.ReplicaCount != len(ns.Bitmaps) {
				t.Fatalf("replica count %d with %d bitmaps", ns.ReplicaCount, len(ns.Bitmaps))
			}
			if !withRegime && ns.Regime != 0 {
				t.Fatalf("replicas-all produced regime %d", ns.Regime)
			}
			for _, b := range ns.Bitmaps {
				if len(b) != info.BitmapSize {
					t.Fatalf("bitmap of %d bytes", len(b))
				}
			}
		}
		again, err := parse(format(nss))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again) != len(nss) {
			t.Fatalf("round trip: %d namespaces, want %d", len(again), len(nss))
		}
		for i := range nss {
			if again[i].Namespace != nss[i].Namespace || again[i].Regime != nss[i].Regime || len(again[i].Bitmaps) != len(nss[i].Bitmaps) {
				t.Fatalf("round trip differs at %d", i)
			}
			for j := range nss[i].Bitmaps {
				if again[i].Bitmaps[j] != nss[i].Bitmaps[j] {
					t.Fatalf("bitmap %d/%d differs", i, j)
				}
			}
		}
	})
}

func FuzzParseNode(f *testing.F) {
	for _, s := range []string{"BB9020011AC4202", "bb9020011ac4202", "", "0123456789ABCDEF0", "ERROR", "BB9-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name, err := info.ParseNode(v)
		if err != nil {
			checkParseError(t, err, v)
			return
		}
		if name != v || name == "" || len(name) > info.MaxNodeNameLen {
			t.Fatalf("accepted %q as %q", v, name)
		}
		for i := 0; i < len(name); i++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(name[i])) {
				t.Fatalf("accepted non-hex %q", name)
			}
		}
	})
}

func FuzzParseGeneration(f *testing.F) {
	for _, s := range []string{"0", "1", "-1", "9223372036854775807", "9223372036854775808", "", "+1", "ERROR:1:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		g, err := info.ParseGeneration(info.CmdPartitionGeneration, v)
		if err != nil {
			checkParseError(t, err, v)
			return
		}
		if g < info.GenerationUnknown {
			t.Fatalf("generation %d from %q", g, v)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	add := func(body string) {
		msg, err := info.AppendMessage(nil, []byte(body))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	add("node\tBB9020011AC4202\npartition-generation\t7\n")
	add("replicas\ttest:0,1," + bitmapB64(1) + "\n")
	add("features\t\nservices\n")
	add("")
	add("\tempty-name\n")
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 10, 'a'})             // truncated body
	f.Add([]byte{2, 3, 0, 0, 0, 0, 0, 0})                   // data message type
	f.Add([]byte{2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // huge length
	f.Add([]byte{2, 1, 0})                                  // short header
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		m, err := info.ReadReply(bytes.NewReader(data), limit)
		if err != nil {
			var fe *info.FrameError
			var pe *info.ParseError
			if !errors.As(err, &fe) && !errors.As(err, &pe) && len(data) != 0 {
				t.Fatalf("error %T %v is neither FrameError nor ParseError", err, err)
			}
			return
		}
		if len(data) < info.HeaderSize {
			t.Fatalf("accepted %d bytes, shorter than a header", len(data))
		}
		var h [info.HeaderSize]byte
		copy(h[:], data)
		hdr := info.DecodeHeader(h)
		if hdr.Version != info.ProtoVersion || hdr.Type != info.TypeInfo || hdr.Length > limit || hdr.Length > uint64(len(data)-info.HeaderSize) {
			t.Fatalf("accepted bad header %+v with %d bytes", hdr, len(data))
		}
		for name, value := range m {
			if name == "" || strings.ContainsAny(name, "\n\t") || strings.Contains(value, "\n") {
				t.Fatalf("bad line %q=%q", name, value)
			}
		}
		// Re-encode and read back: same map.
		var body []byte
		for name, value := range m {
			body = info.AppendReplyLine(body, name, value)
		}
		msg, err := info.AppendMessage(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		again, err := info.ReadReply(bytes.NewReader(msg), 0)
		if err != nil || len(again) != len(m) {
			t.Fatalf("round trip: %v, %d vs %d entries", err, len(again), len(m))
		}
		for k, v := range m {
			if again[k] != v {
				t.Fatalf("round trip %q: %q vs %q", k, again[k], v)
			}
		}
	})
}

// TestSeedBitmapsDecode guards the seed helper itself.
func TestSeedBitmapsDecode(t *testing.T) {
	b, err := base64.StdEncoding.DecodeString(bitmapB64(1))
	if err != nil || len(b) != info.BitmapSize {
		t.Fatalf("seed bitmap: %d bytes, %v", len(b), err)
	}
}
