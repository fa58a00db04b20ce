package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"path"
	"sync"
	"time"
)

// Policy is a gateway's rules for publishing and for private streams.
// Set the fields, then use it from any goroutine; it is not changed after.
type Policy struct {
	// Keys are the publish keys; with none and no token secret, publishing
	// is open.
	Keys []string
	// Tokens checks the tokens; its zero value accepts none.
	Tokens Tokens
	// PrivateStreams are globs (path.Match syntax, e.g. "team-*") of the
	// stream names that are private whoever publishes them.
	PrivateStreams []string

	verified verified
}

// MaxVerified bounds the tokens a Policy remembers as verified.
const MaxVerified = 10000

// verified remembers the tokens already verified, by their SHA-256, until
// they expire: a viewer's every playlist and part carries its token, and
// checking it again each time (a JWT parse and an HMAC, about 12 µs and 50
// allocations) cost private streams 17 % more CPU per request than public
// ones. Only valid tokens are kept; when MaxVerified are, the expired
// leave, and if none has, all do.
type verified struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*Claims
}

// parse is p.Tokens.Parse through the remembered tokens.
func (p *Policy) parse(token string) (*Claims, error) {
	if token == "" || len(token) > maxTokenBytes {
		return p.Tokens.Parse(token)
	}
	key := sha256.Sum256([]byte(token))
	v := &p.verified
	v.mu.Lock()
	c, ok := v.m[key]
	v.mu.Unlock()
	if ok && time.Now().Before(c.Expires.Add(p.Tokens.leeway())) {
		return c, nil
	}
	c, err := p.Tokens.Parse(token)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= MaxVerified {
		now := time.Now()
		for k, old := range v.m {
			if !now.Before(old.Expires.Add(p.Tokens.leeway())) {
				delete(v.m, k)
			}
		}
		if len(v.m) >= MaxVerified {
			clear(v.m)
		}
	}
	if v.m == nil {
		v.m = map[[sha256.Size]byte]*Claims{}
	}
	v.m[key] = c
	return c, nil
}

// check is p.Tokens.Check through the remembered tokens.
func (p *Policy) check(token, stream string, role Role) (*Claims, error) {
	c, err := p.parse(token)
	if err != nil {
		return nil, err
	}
	if err := c.allows(stream, role); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the globs and that private streams can be watched at
// all (they need view tokens, so a secret).
func (p *Policy) Validate() error {
	for i, g := range p.PrivateStreams {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("private_streams[%d]: %q: %w", i, g, err)
		}
	}
	if len(p.PrivateStreams) > 0 && !p.Tokens.Enabled() {
		return fmt.Errorf("private_streams: need token_secret (private streams are watched with view tokens)")
	}
	if n := len(p.Tokens.Secret); n > 0 && n < MinSecretBytes {
		return fmt.Errorf("token_secret: %d bytes, want at least %d", n, MinSecretBytes)
	}
	return nil
}

// Open reports whether anyone may publish (no keys, no token secret).
func (p *Policy) Open() bool { return len(p.Keys) == 0 && !p.Tokens.Enabled() }

// ErrKeyWrong refuses a publish key that is not one of the Keys.
var ErrKeyWrong = &Error{http.StatusForbidden, "key_wrong", "the publish key is wrong"}

// Publish checks a publisher of stream: a publish key (?key=) or a publish
// token for it, unless publishing is open. It returns whether the stream
// is private (a private token, or a name among PrivateStreams), or the
// refusal (an *Error).
func (p *Policy) Publish(r *http.Request, stream string) (private bool, err error) {
	private = p.PrivateByName(stream)
	if p.Open() {
		return private, nil
	}
	key, token := r.URL.Query().Get("key"), FromRequest(r)
	if key != "" && p.keyOK(key) {
		return private, nil
	}
	if token != "" {
		c, err := p.check(token, stream, Publish)
		if err != nil {
			return false, err
		}
		return private || c.Private, nil
	}
	if key == "" {
		return false, ErrTokenMissing
	}
	return false, ErrKeyWrong
}

func (p *Policy) keyOK(key string) bool {
	ok := 0
	for _, k := range p.Keys {
		ok |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
	}
	return ok == 1
}

// PrivateByName reports whether stream matches PrivateStreams.
func (p *Policy) PrivateByName(stream string) bool {
	for _, g := range p.PrivateStreams {
		if ok, _ := path.Match(g, stream); ok {
			return true
		}
	}
	return false
}

// Check checks the request's token for role on stream: its claims, nil
// when it has no token, or the refusal (an *Error) of a token it has. Use it where a
// token is optional (it grants more, e.g. a moderator in chat).
func (p *Policy) Check(r *http.Request, stream string, role Role) (*Claims, error) {
	token := FromRequest(r)
	if token == "" {
		return nil, nil
	}
	return p.check(token, stream, role)
}

// Require is Check where a token is needed (a private stream): a request
// without one gets ErrTokenMissing.
func (p *Policy) Require(r *http.Request, stream string, role Role) (*Claims, error) {
	c, err := p.Check(r, stream, role)
	if err == nil && c == nil {
		return nil, ErrTokenMissing
	}
	return c, err
}
