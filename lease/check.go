package lease

import (
	"fmt"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/procid"
)

// Check reports, in an *arena.CheckError, every problem of the lease
// record (see CheckRecord).
func (l *Lease) Check() error {
	var probs arena.Problems
	CheckRecord(l.seg, l.base, &probs)
	return probs.Err(fmt.Sprintf("lease at %d in %s", l.base, l.seg.Location()))
}

// CheckRecord checks the lease record at base in seg without a Lease
// handle (it writes nothing), adding every problem to probs: a state
// other than free or held, a free lease that names an owner's slot, a
// held lease at epoch 0, an identity, takeover count or last reason of a
// later epoch than the control word's (each is written after the CAS that
// starts its epoch, so none can be ahead), an unknown takeover reason, an
// identity recorded for the current epoch that is empty, and non-zero
// padding or reserved words.
//
// An owner killed right after its CAS leaves the identity, heartbeat and
// reason of an earlier epoch: that is the protocol's normal state until a
// successor judges it dead, not a problem.
func CheckRecord(seg *arena.Segment, base arena.Offset, probs *arena.Problems) {
	if base%8 != 0 || seg.CheckRange(base, Size) != nil {
		probs.Addf("record at %d is outside the segment (%d bytes) or misaligned", base, seg.Len())
		return
	}
	// Read in the reverse order of an acquisition's writes (CAS of ctl,
	// heartbeat, identity, id epoch, takeovers, last reason), so that a
	// concurrent acquisition cannot make a later word look ahead of ctl.
	last := seg.Load64(base + offLast)
	takeovers := seg.Load64(base + offTakeovers)
	idEpoch := seg.Load64(base + offIDEpoch)
	var w [procid.Words]uint64
	seg.LoadWords(base+offIdentity, w[:])
	ctl := seg.Load64(base + offCtl)
	epoch, slot, state := splitCtl(ctl)
	switch {
	case state != stateFree && state != stateHeld:
		probs.Addf("control word %#x: state %d, want 0 (free) or 1 (held)", ctl, state)
	case state == stateFree && slot != 0:
		probs.Addf("control word %#x: free, yet names liveness slot %d", ctl, slot)
	case state == stateHeld && epoch == 0:
		probs.Addf("control word %#x: held at epoch 0 (the first owner's epoch is 1)", ctl)
	}
	if idEpoch > epoch {
		probs.Addf("identity written for epoch %d, after the control word's epoch %d", idEpoch, epoch)
	} else if idEpoch == epoch && epoch != 0 && procid.Unpack(w).IsZero() {
		probs.Addf("identity of epoch %d is empty", epoch)
	}
	if takeovers > epoch {
		probs.Addf("%d takeovers counted in %d epochs", takeovers, epoch)
	}
	if r := Reason(last & 0xff); r > ReasonHeartbeatExpired {
		probs.Addf("last takeover reason %d is unknown", uint8(r))
	}
	if e := last >> 8; e > epoch {
		probs.Addf("last takeover reason recorded for epoch %d, after the control word's epoch %d", e, epoch)
	}
	if pad := seg.Load32(base + offWake + 4); pad != 0 {
		probs.Addf("padding after the wake word is %#x, want 0", pad)
	}
	for o := arena.Offset(offLast + 8); o < Size; o += 8 {
		if v := seg.Load64(base + o); v != 0 {
			probs.Addf("reserved word at %d is %#x, want 0", o, v)
		}
	}
}
