// Package access decides who may do what on a gateway: it checks the
// JSON Web Tokens of the contract (HS256, roles publish ⊃ moderate ⊃ view
// for one stream or all), the publish keys, which streams are private,
// finds a request's client address behind trusted proxies, and bounds the
// WebSocket connections one address may hold.
//
// Tokens are parsed and verified by github.com/golang-jwt/jwt/v5: only
// HS256 is accepted, the expiry is required, and a few seconds of clock
// skew are allowed. A token is never logged; errors name what is wrong
// with it, not what it holds.
package access

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a token allows for its stream; each role includes the ones
// below it.
type Role int

// The roles, weakest first.
const (
	None Role = iota
	View
	Moderate
	Publish
)

var roleNames = map[string]Role{"view": View, "moderate": Moderate, "publish": Publish}

// ParseRole reads "view", "moderate" or "publish".
func ParseRole(s string) (Role, error) {
	r, ok := roleNames[s]
	if !ok {
		return None, fmt.Errorf("role %q: want view, moderate or publish", s)
	}
	return r, nil
}

func (r Role) String() string {
	for name, role := range roleNames {
		if role == r {
			return name
		}
	}
	return "none"
}

// AnyStream is the subject of a token valid for every stream.
const AnyStream = "*"

// Claims are what a token says: the contract's claims.
type Claims struct {
	// Stream is the stream the token is for (its subject), or AnyStream.
	Stream string
	Role   Role
	// Private marks a stream published with this token private (publish
	// tokens only).
	Private bool
	// Name, when set, is the chat name its holder must use.
	Name    string
	Expires time.Time
}

// For reports whether the claims allow role on stream.
func (c *Claims) For(stream string, role Role) bool {
	return (c.Stream == stream || c.Stream == AnyStream) && c.Role >= role
}

// jwtClaims is the JSON form of Claims.
type jwtClaims struct {
	Role    string `json:"role"`
	Private bool   `json:"private,omitempty"`
	Name    string `json:"name,omitempty"`
	jwt.RegisteredClaims
}

// Error is a refusal: its HTTP status and the contract's error code. Every
// refusal this package returns is an *Error.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// The refusals of tokens, as the contract names them.
var (
	ErrTokenMissing = &Error{http.StatusUnauthorized, "token_missing", "this needs a token (?token=... or Authorization: Bearer)"}
	ErrTokenInvalid = &Error{http.StatusForbidden, "token_invalid", "the token is not valid here"}
	ErrTokenExpired = &Error{http.StatusForbidden, "token_expired", "the token has expired"}
	ErrWrongStream  = &Error{http.StatusForbidden, "token_wrong_stream", "the token is for another stream"}
	ErrWrongRole    = &Error{http.StatusForbidden, "token_wrong_role", "the token does not allow this"}
)

// Tokens signs and checks tokens with one shared secret. The zero value
// (no secret) accepts no token.
type Tokens struct {
	// Secret is the HS256 key; empty: tokens are off.
	Secret []byte
	// Leeway is the clock skew allowed on the expiry; default 5 s.
	Leeway time.Duration
}

// MinSecretBytes is the shortest secret accepted: HS256 wants at least
// as many bytes as its hash.
const MinSecretBytes = 32

// maxTokenBytes bounds a token read from the network.
const maxTokenBytes = 4096

// Enabled reports whether tokens are checked at all.
func (t *Tokens) Enabled() bool { return t != nil && len(t.Secret) > 0 }

// Mint signs claims for ttl from now.
func (t *Tokens) Mint(c Claims, ttl time.Duration) (string, error) {
	if !t.Enabled() {
		return "", errors.New("token: no secret")
	}
	if c.Role == None || c.Stream == "" || ttl <= 0 {
		return "", errors.New("token: needs a stream, a role and a positive lifetime")
	}
	if c.Private && c.Role != Publish {
		return "", errors.New("token: private is for publish tokens")
	}
	claims := jwtClaims{Role: c.Role.String(), Private: c.Private, Name: c.Name,
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.Stream, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.Secret)
}

// Parse verifies a token and returns its claims, or ErrTokenMissing,
// ErrTokenInvalid or ErrTokenExpired.
func (t *Tokens) Parse(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrTokenMissing
	}
	if !t.Enabled() || len(token) > maxTokenBytes {
		return nil, ErrTokenInvalid
	}
	var jc jwtClaims
	_, err := jwt.ParseWithClaims(token, &jc, func(*jwt.Token) (any, error) { return t.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(), jwt.WithLeeway(t.leeway()))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrTokenExpired
	case err != nil:
		return nil, ErrTokenInvalid
	}
	role, err := ParseRole(jc.Role)
	if err != nil || jc.Subject == "" || (jc.Private && role != Publish) {
		return nil, ErrTokenInvalid
	}
	return &Claims{Stream: jc.Subject, Role: role, Private: jc.Private, Name: jc.Name, Expires: jc.ExpiresAt.Time}, nil
}

// Check verifies a token for role on stream: the claims, or one of the
// token refusals.
func (t *Tokens) Check(token, stream string, role Role) (*Claims, error) {
	c, err := t.Parse(token)
	if err != nil {
		return nil, err
	}
	if err := c.allows(stream, role); err != nil {
		return nil, err
	}
	return c, nil
}

// allows is nil if the claims allow role on stream, else ErrWrongStream
// or ErrWrongRole.
func (c *Claims) allows(stream string, role Role) error {
	if c.Stream != stream && c.Stream != AnyStream {
		return ErrWrongStream
	}
	if c.Role < role {
		return ErrWrongRole
	}
	return nil
}

func (t *Tokens) leeway() time.Duration {
	if t.Leeway == 0 {
		return 5 * time.Second
	}
	return t.Leeway
}

// FromRequest is the token a request carries: ?token= in its query, else
// an Authorization: Bearer header; "" for none.
func FromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(auth)
	}
	return ""
}
