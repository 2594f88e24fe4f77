package record_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// Example writes and reads a record through a cluster view of a simulated
// three-node cluster. With tend.Config.UseShm true (and a ShmKey), every
// process on the machine would route by one shared view, tended by one of
// them.
func Example() {
	sim, err := tendtest.New(tendtest.Options{Nodes: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()
	cl, err := tend.Open(context.Background(), tend.Config{Seeds: sim.Seeds(), TendInterval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	c, err := record.NewClient(cl, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	key, err := record.NewKey("test", "demo", "myTestKey")
	if err != nil {
		fmt.Println(err)
		return
	}
	// A fresh view may not have the partition map yet: the default
	// policy's retries (and a short wait here) cover that.
	for range 50 {
		if _, err = c.Exists(ctx, nil, key); !errors.Is(err, record.ErrNoNode) && !errors.Is(err, tend.ErrNamespace) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = c.Get(ctx, nil, key)
	fmt.Println("before put, not found:", errors.Is(err, record.ErrKeyNotFound))

	if err := c.Put(ctx, nil, key, record.BinMap{"x": 1234, "y": "abcd"}); err != nil {
		fmt.Println(err)
		return
	}
	rec, err := c.Get(ctx, nil, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("bins:", rec.Bins["x"], rec.Bins["y"], "generation:", rec.Generation)

	// A create-only write of a record that exists is refused.
	wp := record.NewWritePolicy(0, 0)
	wp.RecordExistsAction = record.CREATE_ONLY
	err = c.Put(ctx, wp, key, record.BinMap{"x": 1})
	fmt.Println("create-only:", errors.Is(err, record.ErrKeyExists))

	if err := c.Add(ctx, nil, key, record.BinMap{"x": 1}); err != nil {
		fmt.Println(err)
		return
	}
	rec, _ = c.Get(ctx, nil, key, "x")
	fmt.Println("after add:", rec.Bins["x"])
	existed, err := c.Delete(ctx, nil, key)
	fmt.Println("deleted:", existed, err)
	// Output:
	// before put, not found: true
	// bins: 1234 abcd generation: 1
	// create-only: true
	// after add: 1235
	// deleted: true <nil>
}

// Example_secureCluster reads and writes records on a cluster with TLS,
// security and racks (simulated): the record connections use the view's
// TLS configuration and credentials, and PREFER_RACK reads go to the
// replica on the client's rack when the partition has one there.
func Example_secureCluster() {
	sim, err := tendtest.New(tendtest.Options{Nodes: 3, TLS: &tendtest.TLSOptions{},
		Users: map[string]string{"app": "app-password"}, Racks: []int{1, 2, 2}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()
	roots, err := sim.CertPool()
	if err != nil {
		fmt.Println(err)
		return
	}
	// "host:tlsname:port" seeds; the tender learns the other nodes' TLS
	// names from peers-tls-std.
	cl, err := tend.Open(context.Background(), tend.Config{Seeds: sim.TLSSeeds(), TLS: &tls.Config{RootCAs: roots},
		User: "app", Password: "app-password", RackAware: true, TendInterval: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	cp := record.NewClientPolicy()
	cp.RackIds = []int{1} // this host's rack
	c, err := record.NewClient(cl, cp)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	ctx := context.Background()
	key, _ := record.NewKey("test", "demo", "secure")
	wp := record.NewWritePolicy(0, 0)
	wp.MaxRetries = 5 // the view may still be converging
	if err := c.Put(ctx, wp, key, record.BinMap{"v": "over TLS"}); err != nil {
		fmt.Println(err)
		return
	}
	p := record.NewPolicy()
	p.ReplicaPolicy = record.PREFER_RACK
	rec, err := c.Get(ctx, p, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := cl.RackReplica("test", key.Digest, cp.RackIds)
	rack, _ := n.Rack("test")
	fmt.Println(rec.Bins["v"], "- PREFER_RACK reads this partition from rack", rack)
	// Output:
	// over TLS - PREFER_RACK reads this partition from rack 1
}
