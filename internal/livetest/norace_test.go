//go:build !race

package livetest

const raceScale = 1
