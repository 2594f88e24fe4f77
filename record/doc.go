// Package record reads and writes Aerospike records through a shared
// cluster view (package tend): Get (every bin or the bins named), Exists,
// Put (TTL, generation check, create-only, update-only, replace), Delete,
// Touch and Add (an atomic integer increment), each with a
// context.Context, in Aerospike's message-type-3 protocol (package
// record/wire).
//
// # Routing
//
// Every attempt of a command reads the partition's replicas from the view's
// shared map (tend.Cluster.Map): one atomic load on the hot path, no lock,
// no polling, whichever process tends. A process that opens the view with
// tend.Config.UseShm true therefore sends its commands to the nodes one
// tender per host found, and asks the servers nothing else. The first
// attempt goes to the master; a node the view marks inactive is skipped
// (the next replica is asked instead). With ReplicaPolicy SEQUENCE (the
// default) each retry goes to the next replica, master, first prole,
// second prole, master, ...; with MASTER every attempt goes to the
// master as the map says at that moment.
//
// With PREFER_RACK a read goes to a replica on one of the racks in
// ClientPolicy.RackIds (in order of preference), and to the master (or
// the next active replica) when the partition has no active replica
// there; a retry prefers the racks again but not the node of the failed
// attempt, then goes on in the sequence. The choice is the official
// clients' (their getRackNode), attempt by attempt; the first attempt's
// node is tend.Cluster.RackReplica's. The nodes' racks are in the shared
// view when the tender is rack-aware (tend.Config.RackAware); the racks a
// process prefers are its own (RackIds in its ClientPolicy), since the
// processes sharing a view need not prefer the same. Writes under
// PREFER_RACK route as SEQUENCE, and reads of a strong-consistency
// namespace as MASTER (as the official clients' default session
// consistency reads them).
//
// # Connections
//
// Each process keeps its own connections: a pool per node (a LIFO stack,
// at most ClientPolicy.ConnectionQueueSize connections, idle ones closed
// after ClientPolicy.IdleTimeout at the next use of the pool). A
// connection goes back to its pool only after a complete exchange; one
// that failed or timed out mid-exchange, or read a malformed reply, is
// closed, so a late reply never answers the next command. Every 1024
// commands the client retires the pools of nodes that are no longer in the
// view's node table, closing their idle connections.
//
// A command waits for its reply by polling its socket for up to
// ClientPolicy.SpinWait (default 50 µs) before it parks, which the
// official client does not do: on a virtual machine the wake-up of a
// parked thread costs about as much as a loopback round trip, and polling
// saves it. It polls only while the machine has an idle CPU (the
// runnable count in /proc/loadavg) and backs off after polls that find
// no reply, so a loaded machine or a slow server costs little CPU; TLS
// connections and processes with GOMAXPROCS 1 never poll (spin.go).
//
// # TLS and authentication
//
// A new connection is set up as the view's info connections are. With
// tend.Config.TLS it runs a TLS handshake with that configuration,
// verifying the node's certificate against the node's TLS name from the
// view (partmap.Node.TLSName) and offering the configuration's client
// certificate (mutual TLS). With tend.Config.User (or PKI) it is then
// authenticated through the view's tend.Cluster.Authenticator: the
// process's first connection to a node logs in, later ones present the
// session token kept in the process's memory, and an expired token or one
// the node no longer knows (it restarted) makes the connection log in
// again; a reply saying the connection is not authenticated
// (NOT_AUTHENTICATED) drops the connection and the session and retries.
// Nothing of the password, its hash or a token is written to shared
// memory: each process logs in for itself. A certificate refused by
// either side gives an error wrapping info.ErrTLS (and the x509 error), a
// refused login ErrAuth wrapping the *admin.Error that names the user;
// neither is retried. A network failure during the handshake or the login
// is an ErrNetwork, retried as any other.
//
// # Policies, retries and timeouts
//
// Policy and WritePolicy have the official Go client's field names and
// defaults: SocketTimeout 30 s bounds each attempt, TotalTimeout 1 s the
// command (the context's deadline applies too), MaxRetries 2 for reads and
// 0 for writes (which may not be idempotent), SleepBetweenRetries 1 ms.
// A network error, a socket timeout, a node without a free connection, a
// partition without an active node or a namespace not in the view (yet),
// or the server's timeout result (code
// 9, which the official client retries too) is retried within those
// bounds; any other server answer is not. A command that runs out of time
// fails with ErrTimeout, wrapping the last attempt's error.
//
// # Errors
//
// Server result codes are wire.ResultCode errors: errors.Is(err,
// ErrKeyNotFound), ErrGenerationMismatch, ErrKeyExists, ... and
// ResultCode(err) returns the code. Client-side failures wrap ErrTimeout,
// ErrNetwork, ErrProtocol (a reply that is not a well-formed answer: the
// connection is closed, the command not retried), ErrNoNode,
// ErrNoConnection, ErrInvalid, ErrClosed, ErrAuth or info.ErrTLS. A hostile or truncated reply
// gives one of these, never a panic or a hang: every length is checked
// before it is used (MaxReply bounds a reply) and every read has a
// deadline: the sooner of SocketTimeout, TotalTimeout and the context's (a
// policy with both timeouts 0 and a context without a deadline waits as
// long as the server does, as the official client's would).
//
// # Values
//
// Bins are a BinMap. Values written may be any Go integer type, float64,
// string, []byte, bool, []any (a list) and maps (map[any]any,
// map[string]any, ...); lists and maps are encoded as the server and the
// official clients encode them, so every Aerospike client reads them as
// lists and maps. Values read are int64, float64, string, []byte, bool,
// []any and map[any]any, and own their memory.
package record
