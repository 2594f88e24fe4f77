package wire_test

import (
	"bytes"
	"fmt"

	"github.com/shmkit/shmkit/record/wire"
)

// A client encodes a put, a server decodes it and answers, the client
// decodes the reply.
func Example() {
	key, _ := wire.NewKey("test", "demo", "myTestKey")
	y, _ := wire.ValueOf([]any{"abcd", int64(1)})
	put := wire.Header{Info2: wire.Info2Write | wire.Info2CreateOnly, Expiration: 3600}
	req, _ := wire.AppendCommand(nil, &put, &key, false, []wire.Op{
		{Type: wire.OpWrite, Bin: "x", Value: wire.IntValue(1234)},
		{Type: wire.OpWrite, Bin: "y", Value: y},
	})

	// Server side.
	body, _ := wire.ReadMessage(bytes.NewReader(req), nil, 0)
	var m wire.Message
	if err := m.Decode(body); err != nil {
		fmt.Println(err)
		return
	}
	k, _ := m.Key()
	fmt.Println(k.Namespace, k.Set, k.Digest, len(m.Ops), "ops, create only:", m.Info2&wire.Info2CreateOnly != 0)
	reply, _ := wire.AppendReply(nil, &wire.Header{ResultCode: wire.ResultKeyExists}, nil)

	// Client side.
	var r wire.Message
	_ = r.Decode(reply[wire.ProtoHeaderSize:])
	err := r.ResultCode.Err()
	fmt.Println(err, err == wire.ErrKeyExists)
	// Output:
	// test demo 95bac8fe8a050934734601c283b8335fe8f1b34a 2 ops, create only: true
	// aerospike: key exists (5) true
}

// Values convert to and from Go values; lists and maps are encoded the way
// Aerospike encodes them.
func ExampleValueOf() {
	v, _ := wire.ValueOf(map[string]any{"n": 1, "s": "x"})
	fmt.Println(v.Type())
	m, _ := v.AsMap()
	fmt.Println(m["n"], m["s"])
	// Output:
	// map
	// 1 x
}
