package partmap

import (
	"errors"
	"fmt"
)

// Errors of this package. Every error returned wraps one of them (test with
// errors.Is), or an error of a package this one builds on (arena, layout,
// lease, seqlock), wrapped with what partmap was doing. Fencing failures
// wrap lease.ErrFenced.
var (
	// ErrConfig means a Config field is out of range.
	ErrConfig = errors.New("partmap: invalid configuration")
	// ErrInvalid means an argument is invalid: a name too long, a slot or
	// partition out of range, a namespace handle from nowhere.
	ErrInvalid = errors.New("partmap: invalid argument")
	// ErrNoRoom means a node or namespace did not fit: every slot is in
	// use. The refusal is counted in the segment (Stats). Raise MaxNodes
	// or MaxNamespaces and use a new segment.
	ErrNoRoom = errors.New("partmap: no free slot")
	// ErrInUse means RemoveNode was asked to remove a node that partition
	// entries still refer to.
	ErrInUse = errors.New("partmap: node still referenced by partitions")
	// ErrNotFound means an unknown node name or an empty partition.
	ErrNotFound = errors.New("partmap: not found")
	// ErrCorrupt means shared memory failed validation: a record whose tag
	// or checksum does not match, an impossible length or slot number.
	// Errors wrapping it are *CorruptError values.
	ErrCorrupt = errors.New("partmap: shared memory failed validation")
	// ErrUnstable means the map kept changing (or a publish batch stayed
	// open) for Config.Timeout, so no consistent copy could be taken. An
	// owner stopped in the middle of a publish causes it until another
	// process takes the lease over.
	ErrUnstable = errors.New("partmap: map did not hold still")
	// ErrNotStamped means a Writer was used before StampAll, or after its
	// lease changed epoch: call StampAll after each acquisition.
	ErrNotStamped = errors.New("partmap: writer has not stamped the tables with its lease epoch")
	// ErrExhausted means the owner's lease epoch has no publication
	// numbers left (about 8 million publishes of the map or of one record,
	// or fewer if damage pushed the publish counter near its end). Release
	// the lease and acquire it again: a new epoch starts every counter
	// afresh.
	ErrExhausted = errors.New("partmap: publication numbers of this epoch exhausted")
	// ErrClosed means the Map was closed.
	ErrClosed = errors.New("partmap: map is closed")
)

// CorruptError describes shared memory content that failed validation. It
// wraps ErrCorrupt (and the underlying error, if any, such as a seqlock
// error).
type CorruptError struct {
	// What names the damaged thing: "node slot", "namespace slot",
	// "partition", "stats", "publish word" or "section".
	What string
	// Index is the node slot (1-based), namespace slot or partition, or
	// -1.
	Index int
	// Detail says what was found.
	Detail string
	// Err is the underlying error, if any (e.g. a seqlock error).
	Err error
}

// Error implements error.
func (e *CorruptError) Error() string {
	s := fmt.Sprintf("partmap: %s %d: %s", e.What, e.Index, e.Detail)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + " (the owner republishes damaged records on its next Publish; if this persists, remove the segment after stopping its users)"
}

// Unwrap returns ErrCorrupt and the underlying error.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

func corrupt(what string, index int, err error, format string, args ...any) *CorruptError {
	return &CorruptError{What: what, Index: index, Detail: fmt.Sprintf(format, args...), Err: err}
}
