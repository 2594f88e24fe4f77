// Package livetest holds the cross-process liveness tests of issue 7: the
// lease, the seqlock and the pool, with their owners, writers and claimers
// under another uid, in another PID namespace (one that shares the host's
// /proc, as `unshare -pf` without --mount-proc makes), and observed
// through a /proc mounted with hidepid=2. They assert that no live process
// is ever judged dead (0 takeovers of a live owner, 0 torn reads, 0 double
// hand-outs) and that a killed one is judged dead at once, by its liveness
// slot, where its pid cannot be seen.
//
// The package has no API: it is only its tests, which need root (they
// create namespaces, mount /proc and drop to uid 65534) and skip, saying
// why, where the machine cannot do that.
package livetest
