//go:build race

package chat

// raceEnabled: the race detector is on (memory figures differ).
const raceEnabled = true
