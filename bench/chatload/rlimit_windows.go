package main

// raiseNofile does nothing on Windows, which has no RLIMIT_NOFILE: sockets
// are not bounded by a per-process descriptor limit, so soft and hard stay 0
// and there is nothing to warn about.
func raiseNofile(n int, soft, hard *uint64) []string { return nil }
