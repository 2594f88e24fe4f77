package storage

import "fmt"

// bulkBufSize is how much BulkLoad encodes before one write.
const bulkBufSize = 4 << 20

// BulkLoad appends n records, for building large logs fast (benchmarks,
// imports): fill(i, rec) sets record i (rec is reused: its slices may
// point into memory fill reuses); placed, if not nil, is told each
// record's Location (the record is written by the time BulkLoad
// returns). Frames are encoded into a 4 MiB buffer written with one
// write, so it costs about one system call per 4 MiB. Appends wait while
// it runs; fill and placed must not call the Storage. With SyncEveryWrite the log is synced before BulkLoad returns.
// On error, a prefix of the records is in the log.
func (s *Storage) BulkLoad(n int, fill func(i int, rec *Record) error, placed func(i int, loc Location)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	if err := s.mutatingLocked(); err != nil {
		return err
	}
	buf := make([]byte, 0, bulkBufSize+MaxSize)
	var dead int64 // tombstone bytes in buf
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		lf := s.head
		off := lf.end.Load()
		if err := s.writeLocked(lf, buf, off, false); err != nil {
			return err
		}
		lf.end.Store(off + uint64(len(buf)))
		lf.dead.Add(dead)
		buf, dead = buf[:0], 0
		return nil
	}
	var rec Record
	for i := range n {
		rec = Record{}
		if err := fill(i, &rec); err != nil {
			return fmt.Errorf("storage: bulk load record %d: %w", i, err)
		}
		rec.Copied = false
		if err := check(&rec); err != nil {
			return fmt.Errorf("storage: bulk load record %d: %w", i, err)
		}
		size := uint64(FrameSize(&rec))
		if size > s.opts.FileSize-HeaderSize {
			return fmt.Errorf("storage: bulk load record %d: %w: frame of %d bytes, a log file holds %d",
				i, ErrTooLarge, size, s.opts.FileSize-HeaderSize)
		}
		if s.head.end.Load()+uint64(len(buf))+size > s.head.capacity {
			if err := flush(); err != nil {
				return err
			}
			if err := s.rollLocked(); err != nil {
				return err
			}
		}
		lf := s.head
		off := lf.end.Load() + uint64(len(buf))
		rec.Seq = s.nextSeq
		s.nextSeq++
		buf = encode(buf, &rec)
		if rec.Tombstone {
			dead += int64(size)
		}
		if lf.filt != nil {
			lf.filt.add(&rec.Digest)
			lf.minSeq = min(lf.minSeq, rec.Seq)
		}
		if placed != nil {
			placed(i, Location{File: lf.id, Offset: off, Size: uint32(size)})
		}
		if len(buf) >= bulkBufSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if s.opts.SyncEveryWrite {
		return s.syncTo(s.head, s.head.end.Load())
	}
	return nil
}
