package tend_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// Example opens a cluster view against a simulated three-node cluster and
// looks up the master of a record. With UseShm true (and a ShmKey), every
// process on the machine would share one view and one tender.
func Example() {
	sim, err := tendtest.New(tendtest.Options{Nodes: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()

	c, err := tend.Open(context.Background(), tend.Config{
		Seeds:        sim.Seeds(),
		TendInterval: 100 * time.Millisecond,
		Logger:       quiet(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	d := partmap.StringKeyDigest("demo", "myTestKey")
	master, err := c.Master("test", d)
	if err != nil {
		fmt.Println(err)
		return
	}
	want, _ := sim.Master("test", d.PartitionID())
	fmt.Println("partition", d.PartitionID(), "master matches:", master.Name == want)
	fmt.Println("role:", c.Stats().Role, "nodes:", len(c.Nodes()))
	// Output:
	// partition 2709 master matches: true
	// role: owner nodes: 3
}
