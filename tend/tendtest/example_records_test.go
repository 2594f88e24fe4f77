package tendtest_test

import (
	"fmt"
	"net"

	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// A write sent to a node that is not the record's master succeeds (the
// simulator answers as the master would) and is counted as proxied.
func ExampleCluster_Proxied() {
	sim, err := tendtest.New(tendtest.Options{Nodes: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()
	key, _ := wire.NewKey("test", "demo", "myTestKey")
	master, _ := sim.Master("test", key.PartitionID())
	var wrong tendtest.NodeInfo
	for _, n := range sim.Nodes() {
		if n.Name != master {
			wrong = n
		}
	}
	conn, err := net.Dial("tcp", wrong.Addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	req, _ := wire.AppendCommand(nil, &wire.Header{Info2: wire.Info2Write}, &key, false,
		[]wire.Op{{Type: wire.OpWrite, Bin: "x", Value: wire.IntValue(1234)}})
	conn.Write(req)
	body, err := wire.ReadMessage(conn, nil, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	var reply wire.Message
	_ = reply.Decode(body)
	fmt.Println("result:", reply.ResultCode.String(), "generation:", reply.Generation)
	fmt.Println("proxied by the wrong node:", sim.Proxied(wrong.Index), "total:", sim.TotalProxied())
	// Output:
	// result: ok (0) generation: 1
	// proxied by the wrong node: 1 total: 1
}
