// Package tend tends an Aerospike cluster's node list and partition maps
// once per machine and shares them, through a partmap segment, with every
// process that opens the same key — the shared-memory cluster tending of
// the C client (as_shm_cluster.c), built around a fenced lease.
//
// # Roles
//
// Every process that calls [Open] runs one goroutine that waits for the
// tend lease (package lease) stored in the segment. The waiting is event
// driven: the lease wakes waiters on Release (futex) and on the owner's
// death (pidfd), and after Config.TakeoverThreshold when the owner stops
// renewing its heartbeat (hung, stopped, or in a PID namespace whose
// processes cannot be seen). Followers never talk to the servers: they read
// the node table and the partition maps from the segment, lock-free.
//
// The owner stamps the segment with its lease epoch (partmap.Writer.StampAll)
// and tends every Config.TendInterval. Its first tend re-reads everything
// (every node's peers and replicas); later tends ask each node for "node",
// "peers-generation" and "partition-generation" in one message, fetch
// "peers-clear-std" when a peers generation changed, and "partition-generation"
// with "replicas" (again one message) when a partition generation changed.
// Nodes are asked in parallel, each request bounded by Config.InfoTimeout,
// so a cycle lasts about as long as the slowest node, not the sum of all.
//
// The owner keeps every node's last replicas answer and recomputes a
// namespace's table from all of them when one changes, with [MergeClaims]:
// claims below the highest regime any node claims a partition with are
// ignored for that partition, the newest answer wins a rank, and the
// result does not depend on the order in which nodes answered (the
// official clients' does). Because the table is recomputed, a partition
// that no tended node claims any more has no node rather than a stale one
// — once every node's replicas are up to date. While some node's are not
// (a new owner's first cycle, a failed request, a malformed answer),
// entries are replaced but never emptied: an unclaimed replica keeps its
// published node, as the official clients keep theirs. A node that comes
// out at two ranks of one partition (it moved, and the node that took its
// place has not answered yet) keeps the rank of its newer claim; the
// partition is counted in Stats.Conflicts, and nothing else is held back.
// Changed entries are written (one fenced CAS each) and published in one
// batch; a namespace that cannot be written is retried next cycle without
// holding back the others.
//
// # Damage and removal
//
// The owner repairs the segment every cycle: partmap.Writer.Publish
// compares every entry and record with the owner's memory and rewrites
// what differs, and reclaims a word whose epoch damage pushed above the
// lease's, so a wrong answer lasts one cycle at most (Stats.Repairs). A
// failure that leaves the owner unable to tend (the stamp after a
// takeover fails, the epoch's publication numbers run out) makes it
// release the lease — never retry in a loop — with the reason in
// Stats.StepDowns. Repeated warnings are rate-limited (one record per key
// per ten tend intervals) and the lists in Stats are capped (MaxEvents).
//
// Every process of a shared view checks each TendInterval whether its
// segment was removed (ipcrm, arena.Remove with force, an unlinked file):
// a new process would otherwise create a second segment at the key, with
// a second owner. A process that finds it removed logs it, gives up the
// lease if it held it, and moves to the segment now at the location
// (opening it, or creating it), so that all processes converge on one
// segment and one owner (Stats.Moves).
//
// # Nodes
//
// Nodes are added when a peers list names them; the configured seeds are
// asked when no node is known or none of the known ones answers. Nodes
// found during a cycle are polled in the same cycle. Then:
//
//   - A node that fails [FailLimit] tends in a row (it is down, but the
//     cluster has not reassigned its partitions yet) is marked inactive in
//     the shared node table. Its last claims are kept, so its partitions
//     keep pointing at it until other nodes claim them, as the official
//     clients keep routing to a node until the cluster rebalances. It is
//     still asked every cycle and is reactivated when it answers.
//   - A node that left the cluster — no answering node lists it as a
//     peer — is removed in the cycle that reads the new peers lists (a
//     node that still answers only if another node answered too, since a
//     lone node lists no peers): it is marked inactive, its claims are
//     dropped, and its slot is freed once no partition refers to it.
//
// # Heartbeat and stepping down
//
// The owner renews its heartbeat when a tend cycle completes, successful or
// not: an unreachable cluster (every node refusing connections or timing
// out within InfoTimeout) makes every cycle fail, counted in
// Stats.TendErrors, but the lease does not flap. A cycle that has not
// completed TendInterval before the heartbeat would expire (that is,
// within TakeoverThreshold-TendInterval of the last renewal) is cut off,
// and the owner steps down: it publishes what the cycle wrote, releases
// the lease — the waiting processes take over at once — and sits out one
// TakeoverThreshold before it competes for the lease again
// (Stats.StepDowns, reason StepDownOverrun). This is what happens to an
// owner that is starved of CPU or stopped, or whose InfoTimeout is set
// near the threshold with slow nodes. A fenced write or renewal that fails
// (another process took over) sends the process back to the follower role
// (reason StepDownLost). [Cluster.Close] releases the lease, so another
// process takes over at once.
//
// Readers never wait for a tender: throughout a takeover they answer from
// the last published map.
//
// With Config.UseShm false the same code tends a process-private heap
// segment with a lease this process always holds: every process tends for
// itself, as a client without shared memory does (the benchmark baseline).
// Such an owner never steps down: a cycle that overruns is logged, and
// tending goes on.
//
// # Configuration mismatch and capacity
//
// Every process using a key must agree on MaxNodes and MaxNamespaces. Open
// fails with the segment's *layout.MismatchError (errors.As) otherwise; it
// names the field, both values and the two ways out: stop every process and
// remove the segment, or roll out the new configuration on a new key
// (Config.ShmKey) side by side with the old one. Nodes or namespaces beyond
// the segment's capacity are logged (once each) and counted in the segment
// (Stats.NodeOverflow, Stats.NamespaceOverflow). What fits stays correct,
// and nothing is misrouted: a partition whose node was left out has no
// node (partmap.ErrNotFound), and a namespace left out is unknown
// (ErrNamespace). A slot freed by a removed node is offered to the nodes
// that were left out. The overflow counts are of nodes and namespaces,
// each once however often it is retried.
//
// # Scope
//
// TLS and authentication are out of scope: the tender speaks the clear-text
// info protocol and uses the "peers-clear-std" addresses.
package tend
