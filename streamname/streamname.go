// Package streamname holds the contract's rule for stream names, in one
// place: 1 to 64 characters of A-Z a-z 0-9 _ -. Every name from the
// network is checked with Valid before it reaches a file path or a map.
package streamname

// MaxLen is the longest stream name.
const MaxLen = 64

// Valid reports whether s is a valid stream name: ^[A-Za-z0-9_-]{1,64}$,
// checked without a regexp (every request runs it).
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
