//go:build !race

package main

// raceEnabled: the tests build the server with the race detector too.
const raceEnabled = false
