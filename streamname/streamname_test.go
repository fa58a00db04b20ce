package streamname

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzValid checks Valid against the contract's regular expression.
func FuzzValid(f *testing.F) {
	for _, name := range []string{"", "a", "Room_1-b", strings.Repeat("x", 64), strings.Repeat("x", 65),
		"bad.name", "../etc", "a b", "é", "a/b", "%3C", "-", "_", "Z9", "a\x00"} {
		f.Add(name)
	}
	contract := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := Valid(name), contract.MatchString(name); got != want {
			t.Errorf("Valid(%q) = %v, want %v", name, got, want)
		}
	})
}
