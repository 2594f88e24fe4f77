// Command shmctl lists, inspects, checks, removes, backs up, restores and
// verifies shmkit's shared-memory segments, so that an operator never needs
// to know key numbers or byte layouts.
//
//	shmctl VERB [flags] [arguments] [flags]
//	shmctl help [VERB]
//
// Flags may come before, between or after a verb's arguments ("--" ends
// them). Every read-only verb takes -json. "shmctl help VERB" describes a
// verb, its flags and its output.
//
// # Looking at segments in place
//
// ls lists shmkit's SysV and file segments (--all adds foreign SysV
// segments, labelled by Aerospike's key ranges); inspect shows one
// segment's header, fingerprint, sections and contents (a cluster view's
// nodes, namespaces and lease; an index's counts and stage use) or says
// why it cannot (not shmkit's, damaged); check runs every kind's
// structural Check and lists every problem (exit 1 when there are any);
// rm removes segments, refusing attached and foreign ones without --force
// and Aerospike's keys always. ls, inspect and check take -json.
//
// # Exit codes
//
//	0  success
//	1  the verb ran and found problems (check, verify)
//	2  usage error (unknown verb or flag, missing argument)
//	3  refused: the target is attached, not cleanly shut down, not
//	   shmkit's, already exists or is held by a live writer (the message
//	   names it; some verbs accept --force)
//	4  failed: an operating-system or I/O error, a target that does not
//	   exist, too little memory or disk
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit codes, as documented in the package comment.
const (
	exitOK       = 0
	exitProblems = 1
	exitUsage    = 2
	exitRefused  = 3
	exitFailed   = 4
)

// env is what a verb gets besides its arguments.
type env struct {
	stdout io.Writer
	stderr io.Writer
}

// verb is one shmctl subcommand.
type verb struct {
	name    string
	summary string // one line, for "shmctl help"
	help    string // the whole description, for "shmctl help VERB"
	// run parses args (flags anywhere, see cli.ParseInterleaved) and
	// returns an exit code.
	run func(ctx context.Context, e *env, args []string) int
}

// verbs lists every verb in the order "shmctl help" shows them.
func verbs() []verb {
	return append(inspectionVerbs(), backupVerbs()...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if v, ok := find(args[1]); ok {
				fmt.Fprintf(stdout, "shmctl %s: %s\n\n%s\n", v.name, v.summary, strings.TrimSpace(v.help))
				return exitOK
			}
			fmt.Fprintf(stderr, "shmctl: no verb %q\n", args[1])
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	v, ok := find(name)
	if !ok {
		fmt.Fprintf(stderr, "shmctl: no verb %q\n", name)
		usage(stderr)
		return exitUsage
	}
	return v.run(ctx, e, args[1:])
}

func find(name string) (verb, bool) {
	vs := verbs()
	i := slices.IndexFunc(vs, func(v verb) bool { return v.name == name })
	if i < 0 {
		return verb{}, false
	}
	return vs[i], true
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: shmctl VERB [flags] [arguments]   (shmctl help VERB for more)")
	fmt.Fprintln(w, "\nverbs:")
	for _, v := range verbs() {
		fmt.Fprintf(w, "  %-9s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 problems found, 2 usage, 3 refused, 4 failed")
}
