package storage

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// scanBufSize is the size of Scan's sequential reads.
const scanBufSize = 4 << 20

// frameError is an invalid frame met by readFrames.
type frameError struct {
	off uint64
	err error
}

func (e *frameError) Error() string { return fmt.Sprintf("at offset %d: %v", e.off, e.err) }
func (e *frameError) Unwrap() error { return e.err }

// readFrames decodes the frames of f in [from, to) in large sequential
// reads into *bufp (grown as needed, kept for reuse) and calls fn for each
// with the record (aliasing the buffer), its offset and size. An invalid
// or incomplete frame ends it with a *frameError; fn's error ends it as is.
func readFrames(f *os.File, from, to uint64, bufp *[]byte, fn func(rec *Record, off uint64, n int) error) error {
	if len(*bufp) == 0 {
		*bufp = make([]byte, scanBufSize)
	}
	buf := *bufp
	var rec Record
	pos := from // file offset of buf[0]
	have, start := 0, 0
	for {
		for {
			b := buf[start:have]
			if len(b) < framePrefix {
				break
			}
			n := frameLen(b)
			if n < MinFrame || n > MaxSize {
				return &frameError{pos + uint64(start), fmt.Errorf("%w: frame length %d outside [%d, %d]", ErrCorrupt, n, MinFrame, MaxSize)}
			}
			if uint64(len(b)) < n {
				if n > uint64(len(buf)) { // a frame larger than the buffer
					nb := make([]byte, n)
					copy(nb, b)
					buf, *bufp = nb, nb
					pos += uint64(start)
					have, start = len(b), 0
				}
				break
			}
			if _, err := DecodeRecord(b, &rec); err != nil {
				return &frameError{pos + uint64(start), err}
			}
			if err := fn(&rec, pos+uint64(start), int(n)); err != nil {
				return err
			}
			start += int(n)
		}
		if pos+uint64(have) >= to {
			if start < have {
				return &frameError{pos + uint64(start), fmt.Errorf("%w: %d bytes of an incomplete frame at the end", ErrTruncated, have-start)}
			}
			return nil
		}
		copy(buf, buf[start:have])
		pos += uint64(start)
		have -= start
		start = 0
		m := min(uint64(len(buf)-have), to-(pos+uint64(have)))
		k, err := f.ReadAt(buf[have:have+int(m)], int64(pos)+int64(have))
		have += k
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &frameError{pos + uint64(have), fmt.Errorf("%w: file ends at %d, expected %d", ErrTruncated, pos+uint64(have), to)}
			}
			return err
		}
	}
}

// Scan calls fn for every record in log order: file by file in creation
// order, each from its first record to its committed end as of when Scan
// reaches it. It is what a cold rebuild of an index reads.
//
// The rule for a rebuild: of two records of one digest, the one with the
// larger Seq supersedes the other, and a superseding tombstone removes
// the digest. Seq grows along the log for records written by Append, so
// "later overrides earlier" holds for them; the defragmenter's copies
// (rec.Copied) keep the Seq of the record they copy, and one may lie
// after a newer version of its digest (when the server rewrote the
// digest while the defragmenter copied it). A rebuild that let such a
// copy override would resurrect an old version; comparing Seq does not.
// Records with equal Seq are identical copies: either may be kept.
//
// In practice only copies need the comparison: a record with Copied
// false supersedes everything before it in the log (whatever precedes it
// with a larger Seq would be a copy of a record appended after it, which
// is impossible), so a rebuild can apply it unconditionally, and for a
// Copied record whose digest already has an entry, compare Seq with that
// entry's record (kept from the Scan, or read back with [Storage.Read]).
//
// rec's byte slices alias Scan's read buffer and are valid only until fn
// returns; Scan allocates nothing per record. loc is the record's
// Location, for the index. An error from fn stops the Scan and is
// returned as is. A frame that fails validation stops it with an error
// wrapping [ErrCorrupt] naming the file and offset.
//
// Scan also restarts the live-byte accounting of each file it reads
// (every record live except tombstones); the caller's Release calls for
// the records its rebuild finds superseded complete it. Defrag passes
// wait while a Scan runs; fn must not call Defrag.
func (s *Storage) Scan(fn func(rec Record, loc Location) error) error {
	s.defragMu.Lock()
	defer s.defragMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	s.filesMu.RLock()
	files := make([]*logFile, 0, len(s.files))
	for _, lf := range s.files {
		files = append(files, lf)
	}
	s.filesMu.RUnlock()
	slices.SortFunc(files, func(a, b *logFile) int { return cmp.Compare(a.order, b.order) })
	var buf []byte
	for _, lf := range files {
		s.mu.Lock()
		lf.dead.Store(0)
		end := lf.end.Load()
		s.mu.Unlock()
		err := readFrames(lf.f, HeaderSize, end, &buf, func(rec *Record, off uint64, n int) error {
			if rec.Tombstone {
				lf.dead.Add(int64(n))
			}
			return fn(*rec, Location{File: lf.id, Offset: off, Size: uint32(n)})
		})
		var bad *frameError
		if errors.As(err, &bad) {
			if !errors.Is(err, ErrCorrupt) { // a file that ends inside a frame
				err = fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			return fmt.Errorf("storage: scan %s: %w", fileName(lf.id), err)
		}
		if err != nil {
			if s.closed.Load() {
				return ErrClosed
			}
			return err
		}
	}
	return nil
}
