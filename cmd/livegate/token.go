package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/streamname"
)

// mintToken is `livegate token`: it prints a token signed with the
// token_secret of the configuration (--config or LIVEGATE_CONFIG, or
// LIVEGATE_TOKEN_SECRET).
func mintToken(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("livegate token", flag.ContinueOnError)
	file := fs.String("config", "", "JSON config file holding token_secret (env LIVEGATE_CONFIG)")
	name := fs.String("stream", "", "the stream `name` the token is for, or * for every stream")
	role := fs.String("role", "view", "publish, moderate or view")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	private := fs.Bool("private", false, "a publish token whose stream is private")
	chatName := fs.String("name", "", "the chat name its holder must use (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cargs []string
	if *file != "" {
		cargs = []string{"--config", *file}
	}
	c, err := load(cargs, getenv)
	if err != nil {
		return err
	}
	if c.TokenSecret == "" {
		return errors.New("no token_secret: set it in the config file or LIVEGATE_TOKEN_SECRET")
	}
	if *name != access.AnyStream && !streamname.Valid(*name) {
		return fmt.Errorf("--stream %q: 1 to 64 of A-Z a-z 0-9 _ -, or *", *name)
	}
	r, err := access.ParseRole(*role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	tokens := access.Tokens{Secret: []byte(c.TokenSecret)}
	tok, err := tokens.Mint(access.Claims{Stream: *name, Role: r, Private: *private, Name: *chatName}, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
