package arena

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

// Failpoints in the initialization protocol (see package failpoint).
const (
	// FailInitClaimed: the initialization is claimed, the initializer's
	// identity is recorded, nothing else is written.
	FailInitClaimed = "arena.init.claimed"
	// FailInitMid: the header is half written and the Init callback has
	// not run.
	FailInitMid = "arena.init.mid"
)

// Options configure Create, Open and OpenOrCreate.
type Options struct {
	// Spec is the segment this process wants: kind, config fingerprint and
	// sections. An existing segment must match it (layout.Header.Match).
	Spec layout.Spec
	// Mode is the permission of a created segment; default 0600. Use 0660
	// for a group of worker processes running under different users of one
	// group. It is also the widest permission accepted of an existing
	// segment: one that allows more (0666 when Mode is 0600) is refused
	// with ErrModeTooWide, since users outside the set-up could change it.
	Mode os.FileMode
	// AllowUIDs are the users, besides this process's effective uid, whose
	// segments it attaches. An existing segment owned by anyone else (for
	// SysV, also one created by anyone else: the creator keeps the owner's
	// rights) is refused with ErrForeignOwner before it is mapped: another
	// user could have planted it at the key or path. A group of workers
	// under several users lists the uid of the process that creates the
	// segment (with Mode 0660).
	AllowUIDs []uint32
	// Init fills in the sections of a new segment. It runs in exactly one
	// process, before any other process may use the segment; if it fails
	// the segment is left for another process to initialize.
	Init func(*Segment) error
	// Timeout bounds the wait for another process's initialization (also
	// bounded by the context). Default 10 s.
	Timeout time.Duration
	// AbandonAfter: a segment that stays unclaimed (state empty) this long
	// was abandoned by a creator that died between creating and claiming
	// it, and is initialized by the waiting process. Default 1 s.
	AbandonAfter time.Duration
	// HugePages says whether a segment this call creates is backed by 2
	// MiB pages: HugePagesOff (default), HugePagesTry (fall back to normal
	// pages, logged) or HugePagesRequire (ErrNoHugePages otherwise). See
	// HugePagePolicy for what each backend needs.
	HugePages HugePagePolicy
	// Failpoints, when not nil, arms named failpoints (tests).
	Failpoints *failpoint.Set
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.AbandonAfter <= 0 {
		o.AbandonAfter = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type openMode int

const (
	modeCreate openMode = iota
	modeOpen
	modeOpenOrCreate
)

// Create creates a new segment at loc and initializes it. It fails with
// ErrExists if a segment is already there.
func Create(ctx context.Context, loc Location, opts Options) (*Segment, error) {
	return attach(ctx, loc, opts, modeCreate)
}

// Open attaches an existing segment and waits (bounded) until it is ready.
// If the process that was initializing it died, Open initializes it. It
// fails with ErrNotFound if there is no segment.
func Open(ctx context.Context, loc Location, opts Options) (*Segment, error) {
	return attach(ctx, loc, opts, modeOpen)
}

// OpenOrCreate attaches the segment at loc, creating it if needed. When
// many processes call it at once exactly one initializes the segment; the
// others wait (bounded by opts.Timeout and ctx) until the header says
// ready. A creator that died mid-initialization is detected through its
// identity (package procid) and the segment is initialized again.
func OpenOrCreate(ctx context.Context, loc Location, opts Options) (*Segment, error) {
	return attach(ctx, loc, opts, modeOpenOrCreate)
}

func attach(ctx context.Context, loc Location, opts Options, mode openMode) (*Segment, error) {
	opts.defaults()
	plan, err := opts.Spec.Plan()
	if err != nil {
		return nil, &Error{Op: "plan", Seg: loc.String(), Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var m mapping
	created := false
	for {
		switch mode {
		case modeCreate:
			m, err = createAt(loc, plan.TotalSize, &opts)
			created = err == nil
		case modeOpen:
			m, err = loc.open(opts.access())
		case modeOpenOrCreate:
			m, err = createAt(loc, plan.TotalSize, &opts)
			created = err == nil
			if errors.Is(err, ErrExists) {
				m, err = loc.open(opts.access())
				if errors.Is(err, ErrNotFound) {
					// Removed between our create and open: create again.
					if werr := sleepCtx(ctx, time.Millisecond); werr != nil {
						return nil, &Error{Op: "open", Seg: loc.String(), Err: fmt.Errorf("%w: %w", ErrTimeout, err)}
					}
					continue
				}
			}
		}
		if errors.Is(err, errShort) && mode != modeCreate {
			// A file whose creator has not reserved it yet (or died first).
			if mode == modeOpenOrCreate {
				if fl, ok := loc.(fileLoc); ok {
					if gerr := fl.growTo(plan.TotalSize, opts.access()); gerr != nil {
						return nil, gerr
					}
				}
			}
			if werr := sleepCtx(ctx, time.Millisecond); werr != nil {
				return nil, &Error{Op: "open", Seg: loc.String(), Err: fmt.Errorf("%w: %w", ErrTimeout, err)}
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	s := &Segment{loc: loc, m: m, data: m.bytes()}
	if err := s.settle(ctx, &opts, plan, created); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// settle runs the initialization protocol on an attached segment: claim and
// initialize it, or wait until another process has, or take over from a
// dead initializer; then validate the header against the plan.
func (s *Segment) settle(ctx context.Context, opts *Options, plan layout.Plan, created bool) error {
	if uint64(len(s.data)) < layout.HeaderSize {
		return &Error{Op: "open", Seg: s.loc.String(), Err: fmt.Errorf("%w: %d bytes, smaller than a header", ErrSize, len(s.data)),
			Hint: "this is not a shmkit segment; remove it (" + s.loc.RemoveHint() + ") or use another key"}
	}
	self, err := procid.Self()
	if err != nil {
		return &Error{Op: "open", Seg: s.loc.String(), Err: err}
	}
	backoff := 50 * time.Microsecond
	var emptySince time.Time
	for {
		w := s.Load64(layout.OffState)
		st, pid := layout.SplitStateWord(w)
		magic := s.Load64(layout.OffMagic)
		switch {
		case st == layout.StateEmpty && (magic == 0 || magic == layout.Magic):
			if emptySince.IsZero() {
				emptySince = time.Now()
			}
			if created || time.Since(emptySince) >= opts.AbandonAfter {
				if s.CAS64(layout.OffState, w, layout.InitWord(self.PID, s.initSlot())) {
					if !created {
						opts.Logger.Warn("arena: initializing a segment its creator abandoned", "segment", s.loc.String())
					}
					return s.initialize(opts, plan, self)
				}
				continue
			}
		case st == layout.StateInitializing && (magic == 0 || magic == layout.Magic):
			if dead, why := s.initializerDead(w, pid, self); dead {
				if s.CAS64(layout.OffState, w, layout.InitWord(self.PID, s.initSlot())) {
					opts.Logger.Warn("arena: re-initializing a segment whose initializer died",
						"segment", s.loc.String(), "initializer_pid", pid, "reason", why)
					return s.initialize(opts, plan, self)
				}
				continue
			}
		default:
			return s.validate(plan)
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return &Error{Op: "open", Seg: s.loc.String(),
				Err:  fmt.Errorf("%w: state %s, pid %d", ErrTimeout, st, pid),
				Hint: "another process is initializing it and is alive but not finishing; check that process"}
		}
		backoff = min(2*backoff, 5*time.Millisecond)
	}
}

// initializerDead judges the process recorded in the initializer words (or,
// before it wrote them, the liveness slot and pid in the state word w) by
// procid's one judgement: dead only on proof. A bare pid proves nothing
// here (its PID namespace is not recorded), so an initializer without a
// slot that dies before writing its identity is waited for (Timeout).
func (s *Segment) initializerDead(w uint64, pid uint32, self procid.Identity) (bool, string) {
	var iw [procid.Words]uint64
	s.LoadWords(layout.OffInitializer, iw[:])
	c := procid.Claimant{Slot: layout.StateSlot(w)}
	if id := procid.Unpack(iw); !id.IsZero() && id.PID == pid {
		c.ID = id
	} else {
		c.ID.PID = pid
	}
	reg, _ := s.Liveness() // nil without a lock file: pid evidence only
	lv, why := reg.Judge(c, self)
	return lv == procid.Dead, string(why)
}

// initSlot registers this handle's liveness slot before it claims the
// initialization (0 if the segment has no lock file).
func (s *Segment) initSlot() procid.Slot {
	reg, err := s.Liveness()
	if err != nil {
		return 0
	}
	slot, _ := reg.Register()
	return slot
}

func (s *Segment) initialize(opts *Options, plan layout.Plan, self procid.Identity) (err error) {
	s.StoreWords(layout.OffInitializer, packSlice(self))
	gen := s.Add64(layout.OffInitGen, 1)
	opts.Failpoints.Hit(FailInitClaimed)
	defer func() {
		if err != nil {
			// Leave the segment for someone else (it will be claimed again
			// after AbandonAfter).
			s.Store64(layout.OffState, layout.StateWord(layout.StateEmpty, 0))
		}
	}()
	if plan.TotalSize > uint64(len(s.data)) {
		return &Error{Op: "init", Seg: s.loc.String(), Err: fmt.Errorf("%w: need %d bytes, segment has %d", ErrSize, plan.TotalSize, len(s.data)),
			Hint: "remove it (" + s.loc.RemoveHint() + ") or use another key"}
	}
	if gen > 1 {
		// Re-initialization: wipe what the dead initializer left.
		clear(s.data[layout.MutableEnd:])
	}
	s.Store64(layout.OffMagic, layout.Magic)
	hdr := make([]byte, layout.HeaderSize)
	layout.Encode(hdr, plan, self, time.Now())
	words := make([]uint64, (layout.HeaderSize-layout.MutableEnd)/8)
	for i := range words {
		words[i] = binary.NativeEndian.Uint64(hdr[layout.MutableEnd+8*i:])
	}
	s.StoreWords(layout.MutableEnd, words[:len(words)/2])
	opts.Failpoints.Hit(FailInitMid)
	s.StoreWords(layout.MutableEnd+Offset(8*(len(words)/2)), words[len(words)/2:])
	s.hdr = provisional(plan, self)
	if opts.Init != nil {
		if err := opts.Init(s); err != nil {
			return &Error{Op: "init", Seg: s.loc.String(), Err: fmt.Errorf("%w: %w", ErrInitFailed, err)}
		}
	}
	s.Store64(layout.OffChecksum, layout.Checksum(hdr))
	s.Store64(layout.OffState, layout.StateWord(layout.StateReady, self.PID))
	return s.validate(plan)
}

func provisional(plan layout.Plan, self procid.Identity) *layout.Header {
	return &layout.Header{State: layout.StateInitializing, Major: layout.Major, Minor: layout.Minor,
		Kind: plan.Spec.Kind, TotalSize: plan.TotalSize, Creator: self, Fields: plan.Spec.Fields, Sections: plan.Sections}
}

func packSlice(id procid.Identity) []uint64 {
	w := id.Pack()
	return w[:]
}

// readHeader copies the header with atomic word loads and validates it.
func (s *Segment) readHeader() (*layout.Header, error) {
	n := min(uint64(len(s.data)), layout.HeaderSize) / 8
	words := make([]uint64, n)
	s.LoadWords(0, words)
	b := make([]byte, 8*n)
	for i, w := range words {
		binary.NativeEndian.PutUint64(b[8*i:], w)
	}
	return layout.Check(b, uint64(len(s.data)))
}

func (s *Segment) validate(plan layout.Plan) error {
	h, err := s.readHeader()
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, layout.ErrNotOurs):
			hint = "another program uses this key or file; choose another, or remove it (" + s.loc.RemoveHint() + ") if it is stale"
		case errors.Is(err, layout.ErrVersion), errors.Is(err, layout.ErrByteOrder), errors.Is(err, layout.ErrPlatform):
			hint = "stop the processes using it and remove it (" + s.loc.RemoveHint() + "), or use a new key for a rolling upgrade"
		case errors.Is(err, layout.ErrChecksum), errors.Is(err, layout.ErrCorrupt), errors.Is(err, layout.ErrTruncated):
			hint = "the segment is damaged; remove it (" + s.loc.RemoveHint() + ") and restart its users"
		}
		return &Error{Op: "open", Seg: s.loc.String(), Err: err, Hint: hint}
	}
	if h.State == layout.StateRetired {
		return &Error{Op: "open", Seg: s.loc.String(), Err: ErrRemoved, Hint: "it is being removed; open again to get a new segment"}
	}
	if err := h.Match(plan.Spec); err != nil {
		return &Error{Op: "open", Seg: s.loc.String(), Err: withRemedy(err, s.loc)}
	}
	s.hdr = h
	return nil
}
