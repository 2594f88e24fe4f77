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
// Replicas answers are merged by the regime rule of the official clients:
// a claim replaces the stored owner of a partition only if the claiming
// node's regime is at least the regime stored for the partition. Regimes are
// kept in the owner's memory. Changed entries are written (one fenced CAS
// each) and published in one batch. Nodes are added when a peers list names
// them and deactivated when they vanish from every peers list or fail
// [FailLimit] tends in a row; the configured seeds are used while no node
// is known.
//
// The owner renews its heartbeat when a tend cycle completes, successful or
// not, so an unreachable cluster does not make the lease flap; a cycle is
// bounded by the takeover threshold, so an owner whose cycle cannot finish
// in time loses the lease. A fenced write that fails (another process took
// over) sends the process back to the follower role. [Cluster.Close]
// releases the lease, so another process takes over at once.
//
// With Config.UseShm false the same code tends a process-private heap
// segment with a lease this process always holds: every process tends for
// itself, as a client without shared memory does (the benchmark baseline).
//
// # Configuration mismatch and capacity
//
// Every process using a key must agree on MaxNodes and MaxNamespaces. Open
// fails with the segment's *layout.MismatchError (errors.As) otherwise; it
// names the field, both values and the two ways out: stop every process and
// remove the segment, or roll out the new configuration on a new key
// (Config.ShmKey) side by side with the old one. Nodes or namespaces beyond
// the segment's capacity are logged and counted in the segment
// (partmap.Stats NodeOverflow, NamespaceOverflow); what fits stays correct.
//
// # Scope
//
// TLS and authentication are out of scope: the tender speaks the clear-text
// info protocol and uses the "peers-clear-std" addresses.
package tend
