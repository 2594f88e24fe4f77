// Package harness runs a workload in N real processes by re-executing the
// current binary, for multi-process tests and for the shmbench CLI.
//
// # Wiring
//
// The program registers its workloads in a [Registry] and calls [Dispatch]
// before doing anything else. In a test package:
//
//	func TestMain(m *testing.M) {
//		harness.Dispatch(harness.Registry{
//			"writer": func(ctx context.Context, w *harness.Worker) (any, error) {
//				var args struct{ Rounds int }
//				if err := w.DecodeArgs(&args); err != nil {
//					return nil, err
//				}
//				if err := w.Barrier(ctx); err != nil { // wait for Group.Release
//					return nil, err
//				}
//				w.Failpoints.Hit("seqlock.write.mid") // nil-safe
//				return args.Rounds, nil // JSON-encoded into Result.Value
//			},
//		})
//		os.Exit(m.Run())
//	}
//
// In a child, Dispatch runs the named workload and exits; in the parent it
// returns at once. A test then starts a [Group]:
//
//	g, err := harness.Start(ctx, harness.Spec{Workload: "writer", N: 4,
//		Args: map[string]int{"Rounds": 100}, Failpoints: map[int]string{2: "seqlock.write.mid=kill"}})
//	if err != nil { t.Fatal(err) }
//	t.Cleanup(func() { g.Close() })
//	if err := g.Release(ctx); err != nil { t.Fatal(err) }
//	name, err := g.WaitFailpoint(ctx, 2) // "seqlock.write.mid", worker 2 is now dying
//	results, err := g.Wait()             // err joins every worker failure
//
// Library code under test should take its *failpoint.Set from options; the
// workload passes [Worker.Failpoints] (armed from Spec.Failpoints) through.
//
// # Processes
//
// Children get the parent's environment (minus harness and failpoint
// variables), plus Spec.Env, plus GORACE=atexit_sleep_ms=0 (a race-built
// child otherwise sleeps 1 s at exit). Each child is in its own process
// group (Setpgid) and gets SIGKILL when the parent dies (Pdeathsig; note
// that Linux ties this to the parent *thread* that started the child, which
// in Go only exits if a goroutine exits while locked with
// runtime.LockOSThread). When the ctx given to [Start] is done, or on
// [Group.Close], all children are killed and reaped; with [OnInterrupt]
// that also happens on SIGINT/SIGTERM. Children therefore never outlive
// the parent.
//
// Results and barrier traffic use inherited pipes on fds 3 and 4, and
// failpoint notifications fd 5, so the workload's stdout and stderr stay
// free for logs (see Spec.Stdout and Spec.Stderr).
package harness
