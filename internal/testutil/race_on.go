//go:build race

package testutil

// RaceEnabled is true when built with -race.
const RaceEnabled = true
