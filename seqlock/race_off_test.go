//go:build !race

package seqlock_test

// raceEnabled is true in a race-detector build: tests scale down.
const raceEnabled = false
