package tendtest

import (
	"encoding/hex"
	"testing"

	"github.com/shmkit/shmkit/record/wire"
)

// FuzzExecute runs every request body that decodes through the
// simulator's command execution and encodes the reply: whatever a client
// sends, the node answers with a reply it can send (no panic, no reply
// over the format's limits). Run with
//
//	go test ./tend/tendtest -run '^$' -fuzz FuzzExecute -fuzztime 60s
func FuzzExecute(f *testing.F) {
	for _, s := range []string{
		// put of five bins, get, exists, touch, add, delete as the official
		// Go client sends them (see fuzz/record_wire_fuzz_test.go).
		"1600010000000000000000000000000003e600030005000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a0000000d020100017800000000000004d2000000090203000179616263640000000d021400016c9301a20361a2040200000012021300016d81a2036bcb3ff800000000000000000006021100016201",
		"1603000000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
		"1621000000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
		"1600010000000000000000000000000003e700030001000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a000000040b000000",
		"1600010000000000000000000000000003e700030001000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a0000000d05010001780000000000000001",
		"1600030000000000000000000000000003e700030000000000050074657374000000050164656d6f000000150495bac8fe8a050934734601c283b8335fe8f1b34a",
	} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c, err := New(Options{Nodes: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, body []byte) {
		var m wire.Message
		if m.Decode(body) != nil {
			return
		}
		c.mu.Lock()
		h, ops := c.executeLocked(c.nodes[0], &m)
		c.mu.Unlock()
		if _, err := wire.AppendReply(nil, &h, ops); err != nil {
			t.Fatalf("reply to %x cannot be encoded: %v", body, err)
		}
	})
}
