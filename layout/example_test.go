package layout_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

// Check validates any bytes as a segment header and says what is wrong.
func ExampleCheck() {
	plan, _ := layout.Spec{Kind: layout.KindCluster,
		Fields:   []layout.Field{{Name: "max_nodes", Value: 16}},
		Sections: []layout.SectionSpec{{Name: "nodes", Size: 4096}}}.Plan()
	b := make([]byte, plan.TotalSize)
	layout.Encode(b, plan, procid.Identity{}, time.Unix(0, 0))
	binary.NativeEndian.PutUint64(b[layout.OffMagic:], layout.Magic)
	binary.NativeEndian.PutUint64(b[layout.OffChecksum:], layout.Checksum(b))
	binary.NativeEndian.PutUint64(b[layout.OffState:], layout.StateWord(layout.StateReady, 0))

	h, err := layout.Check(b, uint64(len(b)))
	fmt.Println(h.Kind, h.State, err)

	// A process that wants 32 nodes is told exactly what differs.
	err = h.Match(layout.Spec{Kind: layout.KindCluster, Fields: []layout.Field{{Name: "max_nodes", Value: 32}}})
	var me *layout.MismatchError
	fmt.Println(errors.As(err, &me), me.Field, me.Have, me.Want)

	b[layout.OffFields] ^= 1 // damage the immutable part
	_, err = layout.Check(b, uint64(len(b)))
	fmt.Println(errors.Is(err, layout.ErrChecksum))
	// Output:
	// cluster ready <nil>
	// true max_nodes 16 32
	// true
}
