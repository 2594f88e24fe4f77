//go:build race

package livetest

// Under the race detector every operation is several times slower: the
// tests scale their counts down.
const raceScale = 10
