package arena

import (
	"github.com/shmkit/shmkit/layout"
)

// RemoveOptions configure Remove.
type RemoveOptions struct {
	// Force removes a segment that other processes still have attached, or
	// whose header is not a shmkit header. Attached processes keep working
	// on the old memory; they see Removed() == true and should reattach.
	Force bool
}

// Remove deletes the segment at loc. The header is first marked retired, so
// processes still attached learn (Segment.Removed) that they must reattach.
// Without Force it refuses a segment that is not shmkit's or that other
// processes have attached (ErrInUse).
func Remove(loc Location, opts RemoveOptions) error { return loc.remove(opts.Force) }

// retire checks that data holds a shmkit header and is not attached by
// anyone but the caller, then marks it retired.
func retire(loc Location, data []byte, nattch func() (int, error), force bool) error {
	if len(data) < 16 {
		if !force {
			return &Error{Op: "remove", Seg: loc.String(), Err: layout.ErrNotOurs, Hint: "too small to be shmkit's; force to remove anyway"}
		}
		return nil
	}
	s := &Segment{loc: loc, data: data}
	magic := s.Load64(layout.OffMagic) // other processes may be writing it
	if magic != layout.Magic && magic != 0 && !force {
		return &Error{Op: "remove", Seg: loc.String(), Err: layout.ErrNotOurs,
			Hint: "refusing to remove a segment that is not shmkit's; force to remove anyway"}
	}
	if !force {
		n, err := nattch()
		if err != nil {
			return err
		}
		if n > 1 {
			return &Error{Op: "remove", Seg: loc.String(), Err: ErrInUse,
				Hint: "other processes are attached; stop them first, or force (they will see the segment as removed)"}
		}
	}
	if st, _ := layout.SplitStateWord(s.Load64(layout.OffState)); magic != layout.Magic && (magic != 0 || st != layout.StateInitializing) {
		return nil // forced removal of another program's segment: never write into it
	}
	for {
		w := s.Load64(layout.OffState)
		_, pid := layout.SplitStateWord(w)
		if s.CAS64(layout.OffState, w, layout.StateWord(layout.StateRetired, pid)) {
			return nil
		}
	}
}

// StatOf describes the segment at loc without attaching it.
func StatOf(loc Location) (Stat, error) { return loc.statNoAttach() }

// List returns shmkit's segments on this machine: SysV segments with the
// shmkit key prefix, and the file segments of dir (DefaultDir when dir is
// ""; see ScanOptions.Dirs), sorted by location. Scan also returns their
// headers and, on request, foreign segments.
func List(dir string) ([]Stat, error) {
	if dir == "" {
		dir = DefaultDir
	}
	ls, err := Scan(ScanOptions{Dirs: []string{dir}})
	out := make([]Stat, len(ls))
	for i, l := range ls {
		out[i] = l.Stat
	}
	return out, err
}

// Inspect attaches the segment at loc without a spec, validates its header
// and returns it with the segment (for tools: shmctl inspect, backup). The
// caller must Close the segment. Inspect reads only, so it accepts a
// segment of any owner and mode (it still never follows a symlink).
func Inspect(loc Location) (*Segment, error) {
	m, err := loc.open(access{any: true})
	if err != nil {
		return nil, err
	}
	s := &Segment{loc: loc, m: m, data: m.bytes()}
	h, err := s.readHeader()
	if err != nil {
		_ = s.Close()
		return nil, &Error{Op: "inspect", Seg: loc.String(), Err: err}
	}
	s.hdr = h
	return s, nil
}
