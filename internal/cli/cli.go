// Package cli holds what shmkit's commands share about their command lines.
package cli

import "flag"

// ParseInterleaved parses args with fs, allowing flags before, between
// and after the positional arguments, which it returns in order. "--"
// ends the flags: everything after it is positional.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// Parse stops at the first positional argument, or just after a
		// "--", which it consumes.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
