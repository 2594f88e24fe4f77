package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/internal/cli"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// inspectionVerbs are the verbs that look at segments in place: ls,
// inspect, check and rm.
func inspectionVerbs() []verb {
	return []verb{
		{name: "ls", summary: "list shmkit's segments (SysV and files); --all adds foreign SysV segments", help: lsHelp, run: runLs},
		{name: "inspect", summary: "show a segment's header, fingerprint, sections and contents", help: inspectHelp, run: runInspect},
		{name: "check", summary: "check segments' structures deeply and report every problem", help: checkHelp, run: runCheck},
		{name: "rm", summary: "remove segments (refuses attached and foreign ones unless --force)", help: rmHelp, run: runRm},
	}
}

// dirList is a repeatable -dir flag.
type dirList []string

func (d *dirList) String() string     { return strings.Join(*d, ",") }
func (d *dirList) Set(s string) error { *d = append(*d, s); return nil }

// newFlags returns a flag set that reports errors to e.stderr.
func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("shmctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses args; a usage error has been printed when it returns false.
func parse(e *env, fs *flag.FlagSet, args []string) ([]string, bool) {
	pos, err := cli.ParseInterleaved(fs, args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(e.stderr, "run \"shmctl help %s\" for its usage\n", strings.TrimPrefix(fs.Name(), "shmctl "))
		}
		return nil, false
	}
	return pos, true
}

const lsHelp = `
usage: shmctl ls [--all] [--dir D]... [-json]

Lists shmkit's segments on this machine: SysV segments with shmkit's key
prefix (0x53…) and file segments in the directories given by --dir
(default /dev/shm): files named shmkit.* and any file starting with a
shmkit header (index.Dir stores name theirs index-i<I>-n<N>.b<block>).
Headers are read without changing anything (SysV segments are attached
read-only for the copy; the attach count shown is taken before).

Columns: LOCATION (SysV key or path), KIND (cluster-view, index-main,
index-stage, pool, pool-stage, lease, test; unknown when the header is
unreadable), SIZE, ATT (attached processes: SysV nattch, files: holders
of the shared flock), OWNER, MODE, STATE (ready, clean-shutdown,
initializing(pid N), retired, unreadable), CREATED, and for a cluster
view its tend owner: pid, lease epoch, and when it last tended.

  --all     add every other SysV segment, marked by whose its key says it
            is: aerospike-client (0xA5…-0xAC…: a client's shared cluster
            state), aerospike-primary-index (0xAE…), aerospike-secondary-
            index (0xA2…), aerospike-data (0xAD…) or foreign. Their
            contents are not read.
  --dir D   search D for file segments (repeatable; default /dev/shm)
  -json     one JSON array of objects with the same fields

Exit codes: 0 listed (even if empty), 2 usage, 4 a directory or
/proc/sysvipc/shm could not be read (what could be read is still listed).
`

// lsEntry is one row of ls (also its JSON form).
type lsEntry struct {
	Location    string        `json:"location"`
	Key         string        `json:"key,omitempty"`
	Path        string        `json:"path,omitempty"`
	Kind        segmentKind   `json:"kind"`
	Origin      string        `json:"origin"`
	Size        uint64        `json:"size"`
	Attached    int           `json:"attached"`
	Owner       string        `json:"owner"`
	UID         uint32        `json:"uid"`
	Mode        string        `json:"mode"`
	State       string        `json:"state"`
	Removed     bool          `json:"removed,omitempty"`
	Created     time.Time     `json:"created"`
	HeaderError string        `json:"header_error,omitempty"`
	Cluster     *clusterBrief `json:"cluster,omitempty"`
}

// clusterBrief is what ls shows of a cluster view's tend owner.
type clusterBrief struct {
	OwnerPID   uint32    `json:"owner_pid"`
	Held       bool      `json:"held"`
	Epoch      uint64    `json:"epoch"`
	Generation uint64    `json:"generation"`
	LastTend   time.Time `json:"last_tend"`
}

func runLs(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "ls")
	all := fs.Bool("all", false, "add foreign SysV segments")
	var dirs dirList
	fs.Var(&dirs, "dir", "directory of file segments (repeatable)")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, ok := parse(e, fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "shmctl ls: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	ls, scanErr := arena.Scan(arena.ScanOptions{Dirs: dirs, Foreign: *all})
	rows := make([]lsEntry, 0, len(ls))
	for i := range ls {
		rows = append(rows, lsRow(&ls[i]))
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rows); err != nil {
			return exitFailed
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LOCATION\tKIND\tSIZE\tATT\tOWNER\tMODE\tSTATE\tCREATED\tTEND OWNER")
		for _, r := range rows {
			loc := r.Key
			if r.Path != "" {
				loc = r.Path
			}
			state := r.State
			if r.Removed {
				state += ",removed"
			}
			tend := ""
			if c := r.Cluster; c != nil {
				tend = fmt.Sprintf("pid %d epoch %d gen %d", c.OwnerPID, c.Epoch, c.Generation)
				if !c.Held {
					tend = fmt.Sprintf("none (epoch %d released) gen %d", c.Epoch, c.Generation)
				}
				if !c.LastTend.IsZero() {
					tend += fmt.Sprintf(", last tend %s ago", time.Since(c.LastTend).Round(time.Second))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", loc, r.Kind, sizeText(r.Size), r.Attached, r.Owner, r.Mode, state, timeText(r.Created), tend)
		}
		tw.Flush()
	}
	if scanErr != nil {
		fmt.Fprintf(e.stderr, "shmctl ls: %v\n", scanErr)
		return exitFailed
	}
	return exitOK
}

func lsRow(l *arena.Listed) lsEntry {
	r := lsEntry{Location: l.Location, Path: l.Path, Kind: kindOf(l), Origin: l.Origin.String(), Size: l.Size,
		Attached: l.Attached, Owner: userName(l.OwnerUID), UID: l.OwnerUID, Mode: fmt.Sprintf("%#o", l.Mode),
		State: stateOf(l), Removed: l.Removed, Created: l.Created, HeaderError: errText(l.HeaderErr)}
	if l.Path == "" {
		r.Key = l.Key.String()
	}
	if l.Header != nil && l.HeaderErr == nil {
		r.Created = l.Header.Created
	}
	if r.Kind == "cluster-view" && l.HeaderErr == nil {
		r.Cluster = clusterOf(locationOf(l))
	}
	return r
}

// locationOf returns the location of a listed segment.
func locationOf(l *arena.Listed) arena.Location {
	if l.Path != "" {
		return arena.File(l.Path)
	}
	return arena.SysV(l.Key)
}

// clusterOf reads a cluster view's owner for ls (nil if unreadable).
func clusterOf(loc arena.Location) *clusterBrief {
	seg, err := arena.Inspect(loc)
	if err != nil {
		return nil
	}
	defer seg.Close()
	rep, err := partmap.Examine(seg)
	if err != nil {
		return nil
	}
	c := &clusterBrief{Held: rep.Lease.Held, Epoch: rep.Lease.Epoch, Generation: rep.Generation, LastTend: rep.Owner.LastTend}
	if rep.Lease.Held {
		c.OwnerPID = rep.Lease.Identity.PID
	}
	return c
}

const inspectHelp = `
usage: shmctl inspect KEY|PATH [-json]

Shows one segment: what the kernel says (size, attach count, owner, mode,
creation), its header (kind, format version, state, page size, creator,
initialization count, checksum), the fingerprint (configuration fields)
and the sections (name, offset, size). Then, by kind:

  cluster-view  the lease (holder's pid and liveness slot, epoch), the
                publish generation, the node table (slot, name, active,
                addresses, build, partition entries naming the slot), the
                namespaces (slot, name, replication factor, SC) and the
                tend owner's statistics (pid, tends, last tend)
  index-main    counts (entries, tombstones, bytes described), partitions
                in use and the fullest one, stage use (stages, entries
                handed out, free list), clean shutdowns
  index-stage   which index it belongs to
  pool          elements by state (linked, claimed, free, never used)
  lease         the lease record

KEY is a SysV key (0x53… or decimal); anything else, or anything with a
slash, is a file path. The segment is attached without being changed. A
segment that is not shmkit's, or whose header is damaged, gets a
diagnosis instead of the contents.

  -json    one JSON object

Exit codes: 0 shown, 1 not shmkit's or damaged (diagnosed), 2 usage,
3 a key in Aerospike's ranges (not read), 4 no such segment or no
permission.
`

// inspectOut is inspect's JSON form.
type inspectOut struct {
	Location    string           `json:"location"`
	Kind        segmentKind      `json:"kind"`
	Stat        arena.Stat       `json:"stat"`
	Origin      string           `json:"origin"`
	Diagnosis   string           `json:"diagnosis,omitempty"`
	Error       string           `json:"error,omitempty"`
	Header      *layout.Header   `json:"header,omitempty"`
	Cluster     *partmap.Report  `json:"cluster,omitempty"`
	Index       *index.Summary   `json:"index,omitempty"`
	IndexError  string           `json:"index_error,omitempty"`
	Pool        *arena.PoolStats `json:"pool,omitempty"`
	PoolError   string           `json:"pool_error,omitempty"`
	LeaseRecord *leaseRecordView `json:"lease,omitempty"`
}

// leaseRecordView shows a standalone lease segment's record.
type leaseRecordView struct {
	partmap.LeaseState
	Problems []string `json:"problems,omitempty"`
}

func runInspect(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "inspect")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, ok := parse(e, fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "shmctl inspect: want one KEY or PATH")
		return exitUsage
	}
	loc, err := parseTarget(pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl inspect: %v\n", err)
		return exitUsage
	}
	out := inspectOut{Location: loc.String(), Kind: "unknown", Origin: arena.OriginShmkit.String()}
	if k, ok := aerospikeKey(pos[0]); ok {
		fmt.Fprintf(e.stderr, "shmctl inspect: %s: its key is in Aerospike's range (%s): shmctl does not read it\n", loc, arena.OriginOf(k))
		return exitRefused
	}
	st, err := arena.StatOf(loc)
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl inspect: %s: %s: %v\n", loc, diagnose(err), err)
		return exitFor(err)
	}
	out.Stat = st
	code := exitOK
	if st.Path == "" && arena.OriginOf(st.Key).Foreign() {
		o := arena.OriginOf(st.Key)
		out.Origin, out.Kind = o.String(), segmentKind(o.String())
		out.Diagnosis = fmt.Sprintf("not shmkit's: the key says it is %s's; its contents are not read", o)
		code = exitProblems
		if o != arena.OriginOther {
			code = exitRefused // Aerospike's: never attached
		}
	} else if seg, err := arena.Inspect(loc); err != nil {
		out.Diagnosis, out.Error = diagnose(err), err.Error()
		code = exitFor(err)
	} else {
		h := seg.Header()
		out.Header, out.Kind = h, kindOfHeader(h)
		switch out.Kind {
		case "cluster-view":
			if rep, err := partmap.Examine(seg); err == nil {
				out.Cluster = rep
			} else {
				out.Diagnosis, out.Error = "the header is a cluster view's, but not of this format", err.Error()
				code = exitProblems
			}
		case "lease":
			if off, _, err := seg.Section("lease"); err == nil {
				out.LeaseRecord = leaseView(seg, off)
			}
		}
		seg.Close()
		if out.Kind == "pool" {
			ps, err := arena.ExaminePool(loc)
			out.Pool, out.PoolError = &ps, errText(err)
		}
		if out.Kind == "index-main" {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s, err := index.InspectAt(ictx, loc)
			cancel()
			out.Index, out.IndexError = s, errText(err)
		}
	}
	if *asJSON {
		if err := writeJSON(e.stdout, out); err != nil {
			return exitFailed
		}
		return code
	}
	printInspect(e.stdout, &out)
	return code
}

// leaseView reads a lease record without a handle.
func leaseView(seg *arena.Segment, off arena.Offset) *leaseRecordView {
	var probs arena.Problems
	lease.CheckRecord(seg, off, &probs)
	v := &leaseRecordView{}
	v.Problems, _ = probs.List()
	if off%8 == 0 && seg.CheckRange(off, lease.Size) == nil {
		ctl := seg.Load64(off) // lease.go: epoch (40) | slot (16) | state (8)
		v.Held, v.Epoch = uint8(ctl) == 1, ctl>>24
	}
	return v
}

func printInspect(w io.Writer, o *inspectOut) {
	st := o.Stat
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "segment\t%s\n", o.Location)
	if st.ID != 0 {
		fmt.Fprintf(tw, "shmid\t%d\n", st.ID)
	}
	fmt.Fprintf(tw, "kind\t%s\n", o.Kind)
	fmt.Fprintf(tw, "size\t%d bytes (%s)\n", st.Size, sizeText(st.Size))
	fmt.Fprintf(tw, "attached\t%d\n", st.Attached)
	fmt.Fprintf(tw, "owner\t%s (uid %d), mode %#o\n", userName(st.OwnerUID), st.OwnerUID, st.Mode)
	fmt.Fprintf(tw, "created\t%s by pid %d\n", timeText(st.Created), st.CreatorPID)
	if st.Removed {
		fmt.Fprintf(tw, "removed\tyes: marked for destruction, waiting for its last detach\n")
	}
	if o.Diagnosis != "" {
		fmt.Fprintf(tw, "diagnosis\t%s\n", o.Diagnosis)
	}
	if o.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", o.Error)
	}
	tw.Flush()
	h := o.Header
	if h == nil {
		return
	}
	fmt.Fprintf(w, "\nheader:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := h.State.String()
	if h.State == layout.StateInitializing {
		state += fmt.Sprintf(" (pid %d)", h.StatePID)
	}
	fmt.Fprintf(tw, "  layout kind\t%s\n", h.Kind)
	fmt.Fprintf(tw, "  format\t%d.%d\n", h.Major, h.Minor)
	fmt.Fprintf(tw, "  state\t%s\n", state)
	fmt.Fprintf(tw, "  total size\t%d\n", h.TotalSize)
	fmt.Fprintf(tw, "  page size\t%d\n", h.PageSize)
	fmt.Fprintf(tw, "  created\t%s\n", timeText(h.Created))
	fmt.Fprintf(tw, "  creator\t%s\n", h.Creator)
	fmt.Fprintf(tw, "  initialized\t%d times\n", h.InitGen)
	fmt.Fprintf(tw, "  checksum\t%#016x\n", h.Checksum)
	tw.Flush()
	fmt.Fprintf(w, "\nfingerprint:\n")
	for _, f := range h.Fields {
		fmt.Fprintf(w, "  %-16s %d\n", f.Name, f.Value)
	}
	fmt.Fprintf(w, "\nsections:\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  NAME\tOFFSET\tSIZE\n")
	for _, s := range h.Sections {
		fmt.Fprintf(tw, "  %s\t%d\t%d\n", s.Name, s.Offset, s.Size)
	}
	tw.Flush()
	if r := o.Cluster; r != nil {
		printCluster(w, r)
	}
	if o.Index != nil {
		printIndex(w, o.Index)
	} else if o.IndexError != "" {
		fmt.Fprintf(w, "\nindex: cannot be read: %s\n", o.IndexError)
	}
	if p := o.Pool; p != nil {
		fmt.Fprintf(w, "\npool: %d stages, capacity %d: %d linked, %d claimed (Reclaim frees those of dead owners), %d free, %d never used\n",
			p.Stages, p.Capacity, p.Linked, p.Claimed, p.Free, p.Unused)
		if o.PoolError != "" {
			fmt.Fprintf(w, "  problems: %s\n", o.PoolError)
		}
	}
	if o.Kind == "index-stage" {
		b, _ := h.Field("block")
		in, _ := h.Field("instance")
		ns, _ := h.Field("namespace")
		fmt.Fprintf(w, "\nindex stage: block %d of the index of instance %d namespace %d (inspect its main segment, block 0)\n", b, in, ns)
	}
	if l := o.LeaseRecord; l != nil {
		fmt.Fprintf(w, "\nlease: held %v, epoch %d\n", l.Held, l.Epoch)
		for _, p := range l.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	}
}

func printCluster(w io.Writer, r *partmap.Report) {
	l := r.Lease
	fmt.Fprintf(w, "\nlease:\n")
	if l.Held {
		fmt.Fprintf(w, "  held by pid %d (liveness slot %d) at epoch %d\n", l.Identity.PID, l.Slot, l.Epoch)
	} else {
		fmt.Fprintf(w, "  free (last epoch %d)\n", l.Epoch)
	}
	fmt.Fprintf(w, "  generation %d", r.Generation)
	if r.Publishing {
		fmt.Fprintf(w, " (a publish batch is open)")
	}
	fmt.Fprintln(w)
	o := r.Owner
	if o.PID != 0 || o.Tends != 0 {
		fmt.Fprintf(w, "  tend owner pid %d (epoch %d): %d tends, %d info requests, %d errors, last tend %s (took %s)\n",
			o.PID, o.Epoch, o.Tends, o.InfoRequests, o.TendErrors, timeText(o.LastTend), o.LastTendDuration)
	}
	fmt.Fprintf(w, "\nnodes (%d of %d slots):\n", len(r.Nodes), r.Config.MaxNodes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  SLOT\tNAME\tACTIVE\tENTRIES\tADDRESSES\tBUILD\tTLS NAME\n")
	for _, n := range r.Nodes {
		addrs := make([]string, len(n.Addresses))
		for i, a := range n.Addresses {
			addrs[i] = a.String()
		}
		fmt.Fprintf(tw, "  %d\t%s\t%v\t%d\t%s\t%s\t%s\n", n.Slot, n.Name, n.Active, r.Refs[n.Slot], strings.Join(addrs, ","), n.Build, n.TLSName)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nnamespaces (%d of %d slots):\n", len(r.Namespaces), r.Config.MaxNamespaces)
	for i, ns := range r.Namespaces {
		fmt.Fprintf(w, "  slot %d: %s, replication factor %d, strong consistency %v\n", r.NamespaceSlots[i], ns.Name, ns.ReplicaCount, ns.SC)
	}
	if n := len(r.Problems) + r.Dropped; n > 0 {
		fmt.Fprintf(w, "\n%d problems (shmctl check lists them)\n", n)
	}
}

func printIndex(w io.Writer, s *index.Summary) {
	c := s.Config
	fmt.Fprintf(w, "\nindex (instance %d, namespace %d, %d sprigs per partition, data in index %v):\n", c.Instance, c.Namespace, c.Sprigs, c.DataInIndex)
	fmt.Fprintf(w, "  entries %d (meta says %d live), tombstones %d, bytes described %d\n", s.Count, s.Live, s.Tombstones, s.Bytes)
	fmt.Fprintf(w, "  partitions in use %d of %d, fullest holds %d\n", s.Partitions, 4096, s.MaxPartition)
	capacity := s.Stages * s.StageEntries
	fmt.Fprintf(w, "  stages %d of %d entry lines (capacity %d): %d handed out, %d in sprig tables, %d in free runs\n", s.Stages, s.StageEntries, capacity, s.HandedOut, s.TableLines, s.Free)
	fmt.Fprintf(w, "  clean shutdowns %d\n", s.CleanCount)
}

const checkHelp = `
usage: shmctl check KEY|PATH... [--dir D]... [--all] [-timeout T] [-json]

Checks the structures in each segment deeply and reports every problem
it finds (not just the first), segment by segment:

  cluster-view  lease record, seqlock tables, publish and control words
                (no epoch later than the lease's), every published node,
                namespace and statistics record (tag of its control word,
                checksum, content), every partition entry (epoch, node
                slots in range, none twice, each naming a published node)
  index-main    the index's own Check: links in range, sprigs ordered and
                acyclic, entries in the right partition and sprig, counts
                that agree, a free list that is intact and disjoint from
                the sprigs (its stages are checked with it)
  pool          control block, every element header, and a free list that
                is intact, bounded and holds only free elements (its
                stages are checked with it)
  lease         the lease record
  others        the header only

Stage segments (index-stage, pool-stage) are checked with their main
segment. Walks are bounded, so damaged or hostile memory cannot make
check hang or crash. Run it on quiescent segments: writes in progress may
show up as problems. What a killed process leaves behind and the protocol
recovers from (a dead writer's busy record, a dead owner's claimed pool
elements) is not a problem. Neither is an index update its killed writer
did not finish (a sprig left odd, its partition's counts and the index's
totals off by that update): the index is reported ok with the note
"unclean", and its next start rebuilds it cold.

  --dir D     check every segment in directory D (repeatable)
  --all       check every shmkit segment shmctl ls lists
  -timeout T  bound on waiting for a segment being initialized (10s)
  -json       one JSON array: location, kind, status (ok, problems,
              skipped, error), problems

Exit codes: 0 no problems, 1 problems found (or a target is not shmkit's
or damaged), 2 usage, 4 a target does not exist or cannot be read.
`

// checkResult is the outcome for one segment (also its JSON form).
type checkResult struct {
	Location string      `json:"location"`
	Kind     segmentKind `json:"kind"`
	Status   string      `json:"status"` // ok, problems, skipped, error
	Note     string      `json:"note,omitempty"`
	Problems []string    `json:"problems,omitempty"`
	Dropped  int         `json:"dropped,omitempty"`
	code     int
}

func runCheck(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "check")
	var dirs dirList
	fs.Var(&dirs, "dir", "check every segment in this directory (repeatable)")
	all := fs.Bool("all", false, "check every shmkit segment")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on waiting for an initializing segment")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, ok := parse(e, fs, args)
	if !ok {
		return exitUsage
	}
	var locs []arena.Location
	for _, p := range pos {
		loc, err := parseTarget(p)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl check: %v\n", err)
			return exitUsage
		}
		locs = append(locs, loc)
	}
	code := exitOK
	if len(dirs) > 0 || *all {
		opts := arena.ScanOptions{Dirs: dirs}
		ls, err := arena.Scan(opts)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl check: %v\n", err)
			code = exitFailed
		}
		for i := range ls {
			if l := &ls[i]; *all || l.Path != "" {
				locs = append(locs, locationOf(l))
			}
		}
	}
	if len(pos) == 0 && len(dirs) == 0 && !*all {
		fmt.Fprintln(e.stderr, "shmctl check: want KEY|PATH arguments, --dir D or --all")
		return exitUsage
	}
	results := make([]checkResult, 0, len(locs))
	for _, loc := range locs {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		r := checkOne(cctx, loc)
		cancel()
		results = append(results, r)
		code = max(code, r.code)
	}
	if *asJSON {
		if err := writeJSON(e.stdout, results); err != nil {
			return exitFailed
		}
		return code
	}
	bad := 0
	for _, r := range results {
		note := ""
		if r.Note != "" {
			note = ": " + r.Note
		}
		switch r.Status {
		case "problems":
			bad++
			fmt.Fprintf(e.stdout, "PROBLEMS %s (%s): %d\n", r.Location, r.Kind, len(r.Problems)+r.Dropped)
			for _, p := range r.Problems {
				fmt.Fprintf(e.stdout, "  %s\n", p)
			}
			if r.Dropped > 0 {
				fmt.Fprintf(e.stdout, "  … and %d more\n", r.Dropped)
			}
		case "error":
			bad++
			fmt.Fprintf(e.stdout, "ERROR    %s%s\n", r.Location, note)
		case "skipped":
			fmt.Fprintf(e.stdout, "skipped  %s (%s)%s\n", r.Location, r.Kind, note)
		default:
			fmt.Fprintf(e.stdout, "ok       %s (%s)%s\n", r.Location, r.Kind, note)
		}
	}
	fmt.Fprintf(e.stdout, "%d segments checked, %d with problems\n", len(results), bad)
	return code
}

// checkOne checks the segment at loc.
func checkOne(ctx context.Context, loc arena.Location) checkResult {
	r := checkResult{Location: loc.String(), Kind: "unknown", Status: "ok"}
	if st, err := arena.StatOf(loc); err == nil && st.Path == "" && arena.OriginOf(st.Key).Foreign() {
		o := arena.OriginOf(st.Key)
		r.Kind = segmentKind(o.String())
		r.Status, r.code, r.Problems = "problems", exitProblems, []string{fmt.Sprintf("not shmkit's: the key says it is %s's; its contents are not read", o)}
		return r
	}
	seg, err := arena.Inspect(loc)
	if err != nil {
		r.Status, r.Note, r.code = "error", diagnose(err)+": "+err.Error(), exitFor(err)
		if r.code == exitProblems {
			r.Status, r.Problems, r.Note = "problems", []string{"header: " + diagnose(err) + ": " + err.Error()}, ""
		}
		return r
	}
	h := seg.Header()
	r.Kind = kindOfHeader(h)
	if h.State == layout.StateRetired {
		r.Note = "retired: removed while attached"
	}
	var cerr error
	switch r.Kind {
	case "cluster-view":
		cerr = partmap.CheckSegment(seg)
		seg.Close()
	case "pool":
		seg.Close()
		cerr = arena.CheckPool(loc)
	case "index-main":
		seg.Close()
		cerr = index.CheckAt(ctx, loc)
	case "index-stage", "pool-stage":
		seg.Close()
		r.Status, r.Note = "skipped", "checked with its main segment"
		return r
	case "lease":
		var probs arena.Problems
		if off, _, err := seg.Section("lease"); err != nil {
			probs.Addf("no lease section: %v", err)
		} else {
			lease.CheckRecord(seg, off, &probs)
		}
		seg.Close()
		cerr = probs.Err("lease")
	default:
		seg.Close()
		r.Note = "header only"
	}
	var ace *arena.CheckError
	var ice *index.CheckError
	var iie *index.InterruptedError
	switch {
	case cerr == nil:
		return r
	case errors.As(cerr, &iie):
		// Not damage: the traces of updates a killed writer did not
		// finish; the index starts cold next time.
		r.Note = fmt.Sprintf("unclean: a writer did not finish %d updates (%d partitions hold an odd sprig: %s); the rest is whole; the next start rebuilds the index cold",
			max(iie.InFlight, iie.Partitions), iie.Partitions, strings.Join(iie.Notes[:min(len(iie.Notes), 4)], "; "))
		return r
	case errors.As(cerr, &ace):
		r.Problems, r.Dropped = ace.Problems, ace.Dropped
	case errors.As(cerr, &ice):
		r.Problems = ice.Problems
		for _, n := range ice.Interrupted {
			r.Problems = append(r.Problems, "interrupted update (not damage): "+n)
		}
	default:
		r.Problems = []string{cerr.Error()}
	}
	r.Status, r.code = "problems", exitProblems
	return r
}

const rmHelp = `
usage: shmctl rm KEY|PATH... [--prefix P] [--force]

Removes segments and says what it removed. Without --force it refuses
(naming each) a segment that is attached by any process, and anything
that is not shmkit's: a SysV key outside shmkit's prefix, a segment
without a shmkit header. Keys in Aerospike's ranges (0xA2…, 0xA5…-0xAC…,
0xAD…, 0xAE…) are refused even with --force: use ipcrm for those, knowing
whose they are.

Removing a pool's or an index's main segment removes its stage segments
too (each is named; an attached stage refuses the whole removal without
--force). A SysV segment removed while attached goes on existing until
its last process detaches (ipcs shows it as dest); those processes see
it as removed and reattach.

  --prefix P  remove every segment whose key (written 0x…, e.g. 0x537e01)
              or path (e.g. /dev/shm/shmkit.test) starts with P
  --force     remove attached and foreign segments too

Exit codes: 0 all removed, 2 usage, 3 some refused (the rest removed),
4 some could not be removed (not found, permission).
`

func runRm(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "rm")
	prefix := fs.String("prefix", "", "remove every segment whose key or path starts with this")
	force := fs.Bool("force", false, "remove attached and foreign segments too")
	pos, ok := parse(e, fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) == 0 && *prefix == "" {
		fmt.Fprintln(e.stderr, "shmctl rm: want KEY|PATH arguments or --prefix P")
		return exitUsage
	}
	var locs []arena.Location
	code := exitOK
	for _, p := range pos {
		loc, err := parseTarget(p)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl rm: %v\n", err)
			return exitUsage
		}
		if k, ok := aerospikeKey(p); ok {
			fmt.Fprintf(e.stderr, "shmctl rm: refused %s: its key is in Aerospike's range (%s); shmctl never removes those (use ipcrm -M %s if you are sure)\n", loc, arena.OriginOf(k), k)
			code = exitRefused
			continue
		}
		locs = append(locs, loc)
	}
	nArgs := len(locs)
	if p := *prefix; p != "" {
		opts := arena.ScanOptions{Foreign: true}
		if strings.ContainsRune(p, '/') {
			abs, err := filepath.Abs(p)
			if err != nil {
				fmt.Fprintf(e.stderr, "shmctl rm: %v\n", err)
				return exitUsage
			}
			p = abs
			if strings.HasSuffix(*prefix, "/") {
				p += "/"
			}
			opts.Dirs = []string{filepath.Dir(p)}
		} else if !strings.HasPrefix(strings.ToLower(p), "0x") {
			fmt.Fprintf(e.stderr, "shmctl rm: --prefix %q: want a key prefix written 0x… or a path\n", p)
			return exitUsage
		}
		ls, err := arena.Scan(opts)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl rm: %v\n", err)
			code = exitFailed
		}
		n := 0
		for i := range ls {
			l := &ls[i]
			name := l.Path
			if name == "" {
				name = l.Key.String()
			}
			if strings.HasPrefix(name, strings.ToLower(p)) || strings.HasPrefix(name, p) {
				locs = append(locs, locationOf(l))
				n++
			}
		}
		if n == 0 {
			fmt.Fprintf(e.stdout, "no segment matches prefix %s\n", *prefix)
		}
	}
	for i, loc := range locs {
		if _, err := arena.StatOf(loc); i >= nArgs && errors.Is(err, arena.ErrNotFound) {
			continue // a prefix match removed meanwhile, e.g. as a stage of a main segment
		}
		code = max(code, rmOne(e, loc, *force))
	}
	return code
}

// rmOne removes one segment, printing what it did.
func rmOne(e *env, loc arena.Location, force bool) int {
	st, err := arena.StatOf(loc)
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl rm: %s: %s: %v\n", loc, diagnose(err), err)
		return exitFor(err)
	}
	kind := segmentKind("unknown")
	if st.Path == "" && arena.OriginOf(st.Key).Foreign() {
		o := arena.OriginOf(st.Key)
		kind = segmentKind(o.String())
		if o != arena.OriginOther {
			fmt.Fprintf(e.stderr, "shmctl rm: refused %s: its key is in Aerospike's range (%s); shmctl never removes those (use ipcrm -M %s if you are sure)\n", loc, o, st.Key)
			return exitRefused
		}
		if !force {
			fmt.Fprintf(e.stderr, "shmctl rm: refused %s: not shmkit's (key outside shmkit's prefix 0x53…); --force removes it\n", loc)
			return exitRefused
		}
	} else if seg, err := arena.Inspect(loc); err == nil {
		kind = kindOfHeader(seg.Header())
		seg.Close()
	} else if !force {
		fmt.Fprintf(e.stderr, "shmctl rm: refused %s: %s (%v); --force removes it\n", loc, diagnose(err), err)
		return exitRefused
	}
	stages := stagesOf(loc, kind)
	for _, l := range append([]arena.Location{loc}, stages...) {
		if lst, err := arena.StatOf(l); err == nil && lst.Attached > 0 && !force {
			fmt.Fprintf(e.stderr, "shmctl rm: refused %s (%s): %s is attached by %d processes; stop them first, or --force (they will see it removed)\n", loc, kind, l, lst.Attached)
			return exitRefused
		}
	}
	if err := arena.Remove(loc, arena.RemoveOptions{Force: force}); err != nil {
		switch {
		case errors.Is(err, arena.ErrInUse), errors.Is(err, layout.ErrNotOurs), errors.Is(err, arena.ErrReservedKey):
			fmt.Fprintf(e.stderr, "shmctl rm: refused %s: %v\n", loc, err)
			return exitRefused
		}
		fmt.Fprintf(e.stderr, "shmctl rm: %s: %v\n", loc, err)
		return exitFailed
	}
	extra := ""
	if st.Attached > 0 {
		extra = fmt.Sprintf(", was attached by %d processes", st.Attached)
	}
	fmt.Fprintf(e.stdout, "removed %s (%s, %d bytes%s)\n", loc, kind, st.Size, extra)
	code := exitOK
	for _, l := range stages {
		lst, _ := arena.StatOf(l)
		if err := arena.Remove(l, arena.RemoveOptions{Force: force}); err != nil {
			fmt.Fprintf(e.stderr, "shmctl rm: stage %s of %s: %v\n", l, loc, err)
			code = exitFailed
			continue
		}
		fmt.Fprintf(e.stdout, "removed %s (stage of %s, %d bytes)\n", l, loc, lst.Size)
	}
	return code
}

// stagesOf returns the existing stage segments of a pool's or an index's
// main segment at loc (none for other kinds), which rm removes with it.
func stagesOf(loc arena.Location, kind segmentKind) []arena.Location {
	var out []arena.Location
	switch kind {
	case "pool":
		for n := 1; n < arena.MaxStages; n++ {
			sl, err := loc.Stage(n)
			if err != nil {
				break
			}
			if _, err := arena.StatOf(sl); err == nil {
				out = append(out, sl)
			}
		}
	case "index-main":
		if cfg, err := index.ConfigAt(loc); err == nil {
			out, _ = index.StageLocations(cfg)
		}
	}
	return out
}
