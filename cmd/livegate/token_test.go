package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/access"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func TestMintToken(t *testing.T) {
	env := func(k string) string {
		if k == "LIVEGATE_TOKEN_SECRET" {
			return testSecret
		}
		return ""
	}
	var out bytes.Buffer
	if err := mintToken([]string{"--stream", "show", "--role", "publish", "--ttl", "10m", "--private", "--name", "ann"}, env, &out); err != nil {
		t.Fatal(err)
	}
	c, err := (&access.Tokens{Secret: []byte(testSecret)}).Check(strings.TrimSpace(out.String()), "show", access.Publish)
	if err != nil || !c.Private || c.Name != "ann" || time.Until(c.Expires) > 10*time.Minute || time.Until(c.Expires) < 9*time.Minute {
		t.Fatalf("claims %+v, %v", c, err)
	}
	for _, c := range []struct {
		args []string
		env  func(string) string
		want string
	}{
		{[]string{"--stream", "show"}, func(string) string { return "" }, "no token_secret"},
		{[]string{"--stream", "../x"}, env, "--stream"},
		{[]string{"--stream", "show", "--role", "admin"}, env, "--role"},
		{[]string{"--stream", "show", "--role", "view", "--private"}, env, "private"},
	} {
		if err := mintToken(c.args, c.env, &out); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error about %s", c.args, err, c.want)
		}
	}
}

// TestREADMEMintsTokens runs the README's example of an application
// backend minting a token (Python, standard library only), and checks
// that the gateway accepts what it prints.
func TestREADMEMintsTokens(t *testing.T) {
	python := needTool(t, "python3")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- mint.py -->\\s*```python\\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```python block after <!-- mint.py -->")
	}
	script := filepath.Join(t.TempDir(), "mint.py")
	os.WriteFile(script, append(m[1], "\nprint(mint(\"show\", \"view\", 600, name=\"bob\"))\n"...), 0o644)
	cmd := exec.Command(python, script)
	cmd.Env = append(os.Environ(), "LIVEGATE_TOKEN_SECRET="+testSecret)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("python: %v\n%s", err, ee.Stderr)
	}
	c, err := (&access.Tokens{Secret: []byte(testSecret)}).Check(strings.TrimSpace(string(out)), "show", access.View)
	if err != nil || c.Name != "bob" || c.Role != access.View {
		t.Fatalf("the README's token: %+v, %v", c, err)
	}
}
