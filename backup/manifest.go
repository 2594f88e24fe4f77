package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// Files of a backup directory. Each segment's chunks are concatenated in
// one data file; the manifest is written last.
//
//	D/
//	  MANIFEST          "shmkit-backup 2\n" + JSON + "\nsha256 <hex of all before>\n"
//	  seg-000.data      chunk 0 | chunk 1 | … (raw, or one zstd frame each)
//	  seg-001.data
const (
	ManifestName = "MANIFEST"
	manifestHead = "shmkit-backup "
	// FormatVersion is the version of the backup format this code writes
	// and reads; a manifest of another version is refused (ErrVersion).
	FormatVersion = 2
	// maxManifest bounds the manifest read (16 segments × 512 chunks of a
	// 4 GiB segment is well under 8 MiB).
	maxManifest = 64 << 20
	// partialMarker is in the name of a backup directory still being
	// written; such a directory is never accepted.
	partialMarker = ".partial-"
)

// Compression says how chunks are stored.
type Compression uint8

// Compressions.
const (
	// None stores chunks as they are in memory.
	None Compression = iota
	// Zstd stores each chunk as one zstd frame (github.com/klauspost/compress/zstd).
	Zstd
)

// String returns "none" or "zstd".
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// MarshalText implements encoding.TextMarshaler.
func (c Compression) MarshalText() ([]byte, error) {
	if c > Zstd {
		return nil, fmt.Errorf("backup: unknown compression %d", uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	switch string(b) {
	case "none":
		*c = None
	case "zstd":
		*c = Zstd
	default:
		return fmt.Errorf("compression %q: want none or zstd", b)
	}
	return nil
}

// Role says what a segment is to the restore.
type Role string

// Roles.
const (
	// RolePlain: any shmkit segment, restored as it was, its header state
	// written last.
	RolePlain Role = "plain"
	// RoleIndexMain: block 0 of an index; it carries the writer lease and
	// the clean-shutdown marker and is completed last.
	RoleIndexMain Role = "index-main"
	// RoleIndexStage: a stage block of an index.
	RoleIndexStage Role = "index-stage"
)

// Manifest describes a backup.
type Manifest struct {
	Version     int         `json:"version"`
	Tool        string      `json:"tool"` // the program and module version that wrote it
	Host        string      `json:"host"`
	Created     time.Time   `json:"created"`
	Compression Compression `json:"compression"`
	ChunkSize   uint64      `json:"chunk_size"`
	Segments    []Segment   `json:"segments"`
}

// Segment describes one saved segment.
type Segment struct {
	File string `json:"file"` // data file name in the directory
	Kind string `json:"kind"` // "sysv" or "file"
	Key  string `json:"key,omitempty"`
	Path string `json:"path,omitempty"`
	Role Role   `json:"role"`
	// Instance and Namespace of the index (index roles).
	Instance  uint8 `json:"instance,omitempty"`
	Namespace uint8 `json:"namespace,omitempty"`
	Block     int   `json:"block,omitempty"`

	Size uint64      `json:"size"`
	UID  uint32      `json:"uid"`
	GID  uint32      `json:"gid"`
	Mode os.FileMode `json:"mode"`

	// From the segment header.
	LayoutMajor uint16            `json:"layout_major"`
	LayoutMinor uint16            `json:"layout_minor"`
	SegKind     string            `json:"segment_kind"`
	State       string            `json:"state"`
	Fingerprint map[string]uint64 `json:"fingerprint"`
	// LeaseOffset and LeaseSize locate the writer lease (index-main).
	LeaseOffset uint64 `json:"lease_offset,omitempty"`
	LeaseSize   uint64 `json:"lease_size,omitempty"`

	DataSize uint64  `json:"data_size"` // bytes of the data file
	Chunks   []Chunk `json:"chunks"`
}

// Chunk is one independently checksummed piece of a segment.
type Chunk struct {
	Off     uint64 `json:"off"`      // offset in the segment
	Len     uint64 `json:"len"`      // bytes in the segment
	FileOff uint64 `json:"file_off"` // offset in the data file
	FileLen uint64 `json:"file_len"` // bytes in the data file (compressed length)
	XXH3    string `json:"xxh3_128"` // XXH3-128 of the Len bytes of the segment, 32 hex digits
}

// Location returns where the segment is restored.
func (s *Segment) Location() (arena.Location, error) {
	switch s.Kind {
	case "sysv":
		k, err := arena.ParseKey(s.Key)
		if err != nil {
			return nil, err
		}
		return arena.SysV(k), nil
	case "file":
		return arena.File(s.Path), nil
	}
	return nil, fmt.Errorf("segment kind %q: want sysv or file", s.Kind)
}

// Name names the segment for messages.
func (s *Segment) Name() string {
	if s.Kind == "sysv" {
		return "SysV key " + s.Key
	}
	return "file " + s.Path
}

func dataFileName(i int) string { return fmt.Sprintf("seg-%03d.data", i) }

var dataFileRE = regexp.MustCompile(`^seg-[0-9]{3}\.data$`)

// encodeManifest returns the manifest file's bytes.
func encodeManifest(m *Manifest) ([]byte, error) {
	js, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%d\n", manifestHead, m.Version)
	b.Write(js)
	b.WriteByte('\n')
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "sha256 %s\n", hex.EncodeToString(sum[:]))
	return b.Bytes(), nil
}

// decodeManifest parses and validates a manifest file's bytes: its
// checksum, version and every size, offset and name it records.
func decodeManifest(b []byte) (*Manifest, error) {
	head, _, ok := bytes.Cut(b, []byte{'\n'})
	if !ok || !bytes.HasPrefix(head, []byte(manifestHead)) {
		return nil, fail(ErrManifest, ManifestName, "does not start with %q: not a shmkit backup manifest", manifestHead)
	}
	if v := string(head[len(manifestHead):]); v != fmt.Sprint(FormatVersion) {
		return nil, fail(ErrVersion, ManifestName, "format version %q, this tool reads %d", v, FormatVersion)
	}
	// The last line is the checksum of everything before it.
	body := bytes.TrimSuffix(b, []byte{'\n'})
	i := bytes.LastIndexByte(body, '\n')
	if i < 0 || i < len(head) {
		return nil, fail(ErrManifest, ManifestName, "no checksum line: truncated")
	}
	sumLine, covered := string(body[i+1:]), b[:i+1]
	hexSum, ok := strings.CutPrefix(sumLine, "sha256 ")
	want := sha256.Sum256(covered)
	if !ok || hexSum != hex.EncodeToString(want[:]) || len(b) != i+1+len(sumLine)+1 {
		return nil, fail(ErrManifest, ManifestName, "checksum line %.80q does not match its contents: truncated or changed", sumLine)
	}
	js := covered[len(head)+1:]
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fail(ErrManifest, ManifestName, "%v", err)
	}
	if m.Version != FormatVersion {
		return nil, fail(ErrVersion, ManifestName, "JSON says version %d, this tool reads %d", m.Version, FormatVersion)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// validate checks every number the restore will use.
func (m *Manifest) validate() error {
	bad := func(format string, args ...any) error { return fail(ErrManifest, ManifestName, format, args...) }
	if m.Compression > Zstd {
		return bad("compression %d unknown", m.Compression)
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return bad("chunk size %d outside %d–%d", m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if len(m.Segments) == 0 || len(m.Segments) > maxSegments {
		return bad("%d segments, want 1–%d", len(m.Segments), maxSegments)
	}
	targets := map[string]bool{}
	for i := range m.Segments {
		s := &m.Segments[i]
		if s.File != dataFileName(i) {
			return bad("segment %d: data file %q, want %q", i, s.File, dataFileName(i))
		}
		loc, err := s.Location()
		if err != nil {
			return bad("segment %d: %v", i, err)
		}
		if s.Kind == "file" && (!filepath.IsAbs(s.Path) || filepath.Clean(s.Path) != s.Path) {
			return bad("segment %d: path %q is not absolute and clean", i, s.Path)
		}
		if targets[loc.String()] {
			return bad("segment %d: %s listed twice", i, loc)
		}
		targets[loc.String()] = true
		switch s.Role {
		case RolePlain, RoleIndexStage:
		case RoleIndexMain:
			if s.LeaseSize == 0 || s.LeaseOffset%8 != 0 || s.LeaseOffset < 1024 || s.LeaseOffset > s.Size || s.LeaseSize > s.Size-s.LeaseOffset {
				return bad("segment %d: lease [%d, +%d) outside its %d bytes", i, s.LeaseOffset, s.LeaseSize, s.Size)
			}
		default:
			return bad("segment %d: role %q unknown", i, s.Role)
		}
		if s.Size < 1024 || s.Size > MaxSegmentSize {
			return bad("segment %d: size %d outside 1024–%d", i, s.Size, uint64(MaxSegmentSize))
		}
		if s.Mode&^0o777 != 0 {
			return bad("segment %d: mode %#o has bits other than permissions", i, s.Mode)
		}
		// Chunks tile the segment in order, and the data file in order.
		want := (s.Size + m.ChunkSize - 1) / m.ChunkSize
		if uint64(len(s.Chunks)) != want {
			return bad("segment %d: %d chunks, a %d-byte segment in %d-byte chunks has %d", i, len(s.Chunks), s.Size, m.ChunkSize, want)
		}
		var off, foff uint64
		for j, c := range s.Chunks {
			wantLen := min(m.ChunkSize, s.Size-off)
			if c.Off != off || c.Len != wantLen {
				return bad("segment %d chunk %d: [%d, +%d), want [%d, +%d)", i, j, c.Off, c.Len, off, wantLen)
			}
			if c.FileOff != foff || c.FileLen == 0 || c.FileLen > maxStored(m.ChunkSize) {
				return bad("segment %d chunk %d: file range [%d, +%d) does not follow %d", i, j, c.FileOff, c.FileLen, foff)
			}
			if m.Compression == None && c.FileLen != c.Len {
				return bad("segment %d chunk %d: stored %d bytes of %d uncompressed", i, j, c.FileLen, c.Len)
			}
			if len(c.XXH3) != 32 {
				return bad("segment %d chunk %d: checksum %q is not an XXH3-128", i, j, c.XXH3)
			}
			if _, err := hex.DecodeString(c.XXH3); err != nil {
				return bad("segment %d chunk %d: checksum %q is not hex", i, j, c.XXH3)
			}
			off += c.Len
			foff += c.FileLen
		}
		if foff != s.DataSize {
			return bad("segment %d: chunks fill %d bytes of the data file, manifest says %d", i, foff, s.DataSize)
		}
	}
	return nil
}

// maxStored bounds a stored chunk: zstd's worst case is a little above
// the input.
func maxStored(chunk uint64) uint64 { return chunk + chunk/64 + 1024 }

// checkDirEntries refuses a directory with files other than the manifest
// and the data files it names.
func checkDirEntries(dir string, m *Manifest) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fail(ErrIO, dir, "%v", err)
	}
	want := []string{ManifestName}
	for _, s := range m.Segments {
		want = append(want, s.File)
	}
	var foreign []string
	for _, e := range ents {
		if !slices.Contains(want, e.Name()) || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) > 0 {
		return fail(ErrForeign, dir, "%d entries that are not this backup's: %s (a backup directory holds only MANIFEST and the seg-NNN.data files it lists; move the others away)",
			len(foreign), strings.Join(foreign[:min(len(foreign), 8)], ", "))
	}
	return nil
}
