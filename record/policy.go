package record

import (
	"fmt"
	"log/slog"
	"math"
	"time"
)

// ReplicaPolicy says which replica of a partition a command goes to. The
// names and the default are the official Go client's.
type ReplicaPolicy uint8

const (
	// MASTER sends every attempt of a command to the partition's master.
	MASTER ReplicaPolicy = iota
	// SEQUENCE sends the first attempt to the master and each retry to
	// the next replica (master, first prole, second prole, master, ...).
	// It is the default, as in the official clients.
	SEQUENCE
	// PREFER_RACK sends a read to a replica on one of
	// ClientPolicy.RackIds (tried in order; on a rack, the replicas in
	// sequence order), and to the master (or the next active replica) when
	// no active replica is on those racks. A retry goes on in the
	// sequence, preferring the racks again but not the node of the
	// previous attempt, as the official clients' getRackNode does. Writes
	// under PREFER_RACK route as SEQUENCE, and reads of a
	// strong-consistency namespace as MASTER, as in the official clients
	// (whose default session consistency reads such namespaces from the
	// master).
	// Racks come from the view: the tender must be rack-aware
	// (tend.Config.RackAware); without racks in the view PREFER_RACK
	// routes as SEQUENCE.
	PREFER_RACK
)

var replicaNames = [...]string{"MASTER", "SEQUENCE", "PREFER_RACK"}

// String returns the official client's name of r.
func (r ReplicaPolicy) String() string { return enumName(replicaNames[:], uint8(r), "ReplicaPolicy") }

// enumName returns names[v], or type(v) for a value without a name.
func enumName(names []string, v uint8, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

// RecordExistsAction says what a Put does with a record that exists (or
// does not). The names, the order and the default (UPDATE) are the
// official Go client's.
type RecordExistsAction uint8

const (
	// UPDATE creates the record or merges the bins into it.
	UPDATE RecordExistsAction = iota
	// UPDATE_ONLY merges the bins into an existing record and fails with
	// ErrKeyNotFound if there is none.
	UPDATE_ONLY
	// REPLACE creates the record or replaces all its bins.
	REPLACE
	// REPLACE_ONLY replaces all bins of an existing record and fails with
	// ErrKeyNotFound if there is none.
	REPLACE_ONLY
	// CREATE_ONLY creates the record and fails with ErrKeyExists if it
	// exists.
	CREATE_ONLY
)

var existsNames = [...]string{"UPDATE", "UPDATE_ONLY", "REPLACE", "REPLACE_ONLY", "CREATE_ONLY"}

// String returns the official client's name of a.
func (a RecordExistsAction) String() string {
	return enumName(existsNames[:], uint8(a), "RecordExistsAction")
}

// GenerationPolicy says whether a write checks the record's generation.
// The names are the official Go client's.
type GenerationPolicy uint8

const (
	// NONE writes whatever the record's generation.
	NONE GenerationPolicy = iota
	// EXPECT_GEN_EQUAL writes only if the record's generation equals
	// WritePolicy.Generation, and fails with ErrGeneration otherwise.
	EXPECT_GEN_EQUAL
	// EXPECT_GEN_GT writes only if WritePolicy.Generation is greater than
	// the record's generation.
	EXPECT_GEN_GT
)

var genNames = [...]string{"NONE", "EXPECT_GEN_EQUAL", "EXPECT_GEN_GT"}

// String returns the official client's name of g.
func (g GenerationPolicy) String() string {
	return enumName(genNames[:], uint8(g), "GenerationPolicy")
}

// TTL values of WritePolicy.Expiration with a special meaning (the
// official client's).
const (
	// TTLServerDefault uses the namespace's default-ttl.
	TTLServerDefault = 0
	// TTLDontExpire makes the record never expire.
	TTLDontExpire = math.MaxUint32
	// TTLDontUpdate keeps the record's TTL on a write.
	TTLDontUpdate = math.MaxUint32 - 1
)

// Policy is the policy of a read command (Get, Exists) and the base of
// WritePolicy. The field names and defaults (NewPolicy) are the official
// Go client's BasePolicy's.
type Policy struct {
	// SocketTimeout bounds each attempt's network round trip (connect,
	// send, receive). When it expires the attempt fails and, within
	// MaxRetries and TotalTimeout, the command is retried on the next
	// replica. 0 means no bound other than TotalTimeout. Default 30 s.
	SocketTimeout time.Duration
	// TotalTimeout bounds the whole command, retries and sleeps included.
	// The context's deadline applies too; the sooner wins. 0 means no
	// bound other than the context's. Default 1 s.
	TotalTimeout time.Duration
	// MaxRetries is how many times a command is retried after a network
	// error or timeout (so 1+MaxRetries attempts at most). Default 2 for
	// reads, 0 for writes (NewWritePolicy), which may not be idempotent.
	MaxRetries int
	// SleepBetweenRetries is the pause before a retry. Default 1 ms.
	SleepBetweenRetries time.Duration
	// ReplicaPolicy chooses the replica of each attempt. Default SEQUENCE.
	ReplicaPolicy ReplicaPolicy
}

// NewPolicy returns a read policy with the official client's defaults.
func NewPolicy() *Policy {
	return &Policy{
		SocketTimeout:       30 * time.Second,
		TotalTimeout:        time.Second,
		MaxRetries:          2,
		SleepBetweenRetries: time.Millisecond,
		ReplicaPolicy:       SEQUENCE,
	}
}

// WritePolicy is the policy of a write command (Put, Delete, Touch, Add).
type WritePolicy struct {
	Policy
	// RecordExistsAction is what Put does with an existing record
	// (default UPDATE). Add and Touch ignore it.
	RecordExistsAction RecordExistsAction
	// GenerationPolicy and Generation make a write conditional on the
	// record's generation (default NONE).
	GenerationPolicy GenerationPolicy
	Generation       uint32
	// Expiration is the record's TTL in seconds; TTLServerDefault (0),
	// TTLDontExpire and TTLDontUpdate have their special meanings.
	Expiration uint32
	// SendKey stores the user key with the record (default false), as
	// the official client's BasePolicy.SendKey.
	SendKey bool
}

// NewWritePolicy returns a write policy with the official client's
// defaults (MaxRetries 0) and the given generation and expiration.
func NewWritePolicy(generation, expiration uint32) *WritePolicy {
	p := &WritePolicy{Policy: *NewPolicy(), Generation: generation, Expiration: expiration}
	p.MaxRetries = 0
	return p
}

// ClientPolicy configures a Client. The field names and defaults
// (NewClientPolicy) are the official Go client's where it has them. The
// official ClientPolicy's TlsConfig, User, Password and AuthMode are not
// here: the record connections use the view's (tend.Config.TLS, User,
// Password, AuthMode), so that info and record connections are set up
// alike.
type ClientPolicy struct {
	// ConnectionQueueSize is the most connections this process keeps
	// open to one node. A command that finds them all busy fails its
	// attempt with ErrNoConnection (retried like a network error), as
	// the official client does with LimitConnectionsToQueueSize.
	// Default 100.
	ConnectionQueueSize int
	// IdleTimeout closes a pooled connection unused for this long, at the
	// next use of its pool; set it a few seconds below the server's
	// proto-fd-idle-ms. 0 (the default) keeps idle connections.
	IdleTimeout time.Duration
	// RackIds are the racks PREFER_RACK reads prefer, most preferred
	// first (the official client's ClientPolicy.RackIds): usually the
	// one rack this host is in. Each is 0..partmap.MaxRackID. They are
	// this process's choice, not the shared view's: processes on one
	// host share the view (and the nodes' racks in it) whatever racks
	// they prefer. Default none (PREFER_RACK then routes as SEQUENCE).
	RackIds []int
	// SpinWait is how long a command polls its socket for the reply
	// before it parks (a busy-poll on plain TCP connections; TLS
	// connections always park). On a virtual machine, waking a parked
	// thread can cost as much as a loopback round trip; polling saves it
	// at the price of the CPU time polled. The client polls only while
	// the machine has an idle CPU and stops polling for a while after
	// polls that found no reply, so a loaded machine or a slow server
	// costs little (spin.go has the rule). 0 never polls; a
	// process with GOMAXPROCS 1 never does either. Default 50 µs.
	SpinWait time.Duration
	// Logger receives debug records (dials, dropped connections); nil
	// discards them.
	Logger *slog.Logger
}

// DefaultSpinWait is NewClientPolicy's SpinWait.
const DefaultSpinWait = 50 * time.Microsecond

// NewClientPolicy returns a client policy with the official client's
// defaults (SpinWait, which the official client does not have, is
// DefaultSpinWait).
func NewClientPolicy() *ClientPolicy {
	return &ClientPolicy{ConnectionQueueSize: 100, SpinWait: DefaultSpinWait}
}
