package procid_test

import (
	"fmt"

	"github.com/shmkit/shmkit/procid"
)

// An identity survives pid reuse: a different start time or boot id, or an
// exited process, is judged dead.
func ExampleIdentity_Check() {
	self, err := procid.Self()
	if err != nil {
		fmt.Println(err)
		return
	}
	lv, _ := self.Check()
	fmt.Println(lv)

	reused := self
	reused.StartTime++ // the same pid, started at another time
	lv, why := reused.Check()
	fmt.Println(lv, why == procid.ReasonPIDReused)

	fmt.Println(procid.Unpack(self.Pack()) == self)
	// Output:
	// alive
	// dead true
	// true
}
