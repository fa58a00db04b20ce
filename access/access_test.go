package access

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// sign signs any claims with key and method, for tokens Mint would not make.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokens(t *testing.T) {
	tk := &Tokens{Secret: secret}
	mint := func(c Claims, ttl time.Duration) string {
		s, err := tk.Mint(c, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name   string
		token  string
		stream string
		role   Role
		want   *Error // nil: accepted
	}{
		{"publish for its stream", mint(Claims{Stream: "a", Role: Publish}, time.Hour), "a", Publish, nil},
		{"publish includes view", mint(Claims{Stream: "a", Role: Publish}, time.Hour), "a", View, nil},
		{"moderate includes view", mint(Claims{Stream: "a", Role: Moderate}, time.Hour), "a", View, nil},
		{"any stream", mint(Claims{Stream: AnyStream, Role: View}, time.Hour), "b", View, nil},
		{"view cannot publish", mint(Claims{Stream: "a", Role: View}, time.Hour), "a", Publish, ErrWrongRole},
		{"moderate cannot publish", mint(Claims{Stream: "a", Role: Moderate}, time.Hour), "a", Publish, ErrWrongRole},
		{"other stream", mint(Claims{Stream: "a", Role: Publish}, time.Hour), "b", View, ErrWrongStream},
		{"missing", "", "a", View, ErrTokenMissing},
		{"garbage", "not.a.token", "a", View, ErrTokenInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "role": "view", "exp": time.Now().Add(-time.Minute).Unix()}), "a", View, ErrTokenExpired},
		{"within the leeway", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "role": "view", "exp": time.Now().Add(-2 * time.Second).Unix()}), "a", View, nil},
		{"no expiry", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "role": "view"}), "a", View, ErrTokenInvalid},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another secret of 32 bytes......"), jwt.MapClaims{"sub": "a", "role": "view", "exp": exp}), "a", View, ErrTokenInvalid},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "a", "role": "view", "exp": exp}), "a", View, ErrTokenInvalid},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "a", "role": "view", "exp": exp}), "a", View, ErrTokenInvalid},
		{"unknown role", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "role": "admin", "exp": exp}), "a", View, ErrTokenInvalid},
		{"no subject", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"role": "view", "exp": exp}), "a", View, ErrTokenInvalid},
		{"private view token", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "role": "view", "private": true, "exp": exp}), "a", View, ErrTokenInvalid},
		{"too long", strings.Repeat("a", maxTokenBytes+1), "a", View, ErrTokenInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, err := tk.Check(c.token, c.stream, c.role)
			if c.want == nil {
				if err != nil || claims == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
	if _, err := (&Tokens{}).Check(mint(Claims{Stream: "a", Role: View}, time.Hour), "a", View); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("tokens without a secret: %v", err)
	}
	c, err := tk.Parse(mint(Claims{Stream: "a", Role: Publish, Private: true, Name: "ann"}, time.Hour))
	if err != nil || !c.Private || c.Name != "ann" || time.Until(c.Expires) < 59*time.Minute {
		t.Errorf("claims %+v, %v", c, err)
	}
	if _, err := tk.Mint(Claims{Stream: "a", Role: View, Private: true}, time.Hour); err == nil {
		t.Error("minted a private view token")
	}
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest("GET", "/live/a/index.m3u8?token=q", nil)
	r.Header.Set("Authorization", "Bearer h")
	if got := FromRequest(r); got != "q" {
		t.Errorf("query and header: %q", got)
	}
	r = httptest.NewRequest("GET", "/live/a/index.m3u8", nil)
	r.Header.Set("Authorization", "Bearer  h ")
	if got := FromRequest(r); got != "h" {
		t.Errorf("header: %q", got)
	}
	r.Header.Set("Authorization", "Basic h")
	if got := FromRequest(r); got != "" {
		t.Errorf("basic auth taken for a token: %q", got)
	}
}

func TestPublish(t *testing.T) {
	tk := Tokens{Secret: secret}
	tok := func(stream string, role Role, private bool) string {
		s, err := tk.Mint(Claims{Stream: stream, Role: role, Private: private}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name    string
		policy  *Policy
		query   string
		private bool
		want    *Error
	}{
		{"open", &Policy{}, "", false, nil},
		{"open, private by name", &Policy{PrivateStreams: []string{"s*"}, Tokens: tk}, "token=" + tok("s", Publish, false), true, nil},
		{"key", &Policy{Keys: []string{"k1", "k2"}}, "key=k2", false, nil},
		{"wrong key", &Policy{Keys: []string{"k1"}}, "key=k3", false, ErrKeyWrong},
		{"nothing", &Policy{Keys: []string{"k1"}}, "", false, ErrTokenMissing},
		{"nothing, tokens", &Policy{Tokens: tk}, "", false, ErrTokenMissing},
		{"token", &Policy{Tokens: tk}, "token=" + tok("s", Publish, false), false, nil},
		{"private token", &Policy{Tokens: tk}, "token=" + tok("s", Publish, true), true, nil},
		{"view token", &Policy{Tokens: tk}, "token=" + tok("s", View, false), false, ErrWrongRole},
		{"token for another", &Policy{Tokens: tk}, "token=" + tok("t", Publish, false), false, ErrWrongStream},
		{"key beside a bad token", &Policy{Keys: []string{"k1"}, Tokens: tk}, "key=k1&token=bad", false, nil},
		{"wrong key, good token", &Policy{Keys: []string{"k1"}, Tokens: tk}, "key=k9&token=" + tok("s", Publish, false), false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.policy.Validate(); err != nil {
				t.Fatal(err)
			}
			private, err := c.policy.Publish(httptest.NewRequest("GET", "/ingest/s?"+c.query, nil), "s")
			if c.want == nil && (err != nil || private != c.private) {
				t.Fatalf("private %v, err %v; want private %v", private, err, c.private)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
	for _, bad := range []*Policy{
		{PrivateStreams: []string{"a*"}},             // private streams nobody could watch
		{PrivateStreams: []string{"[a"}, Tokens: tk}, // bad glob
		{Tokens: Tokens{Secret: []byte("short")}},    // weak secret
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad.PrivateStreams)
		}
	}
}

func TestClientAddr(t *testing.T) {
	p, err := ParseProxies([]string{"10.0.0.0/8", "192.168.1.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.5:1234", "", "203.0.113.5"},
		{"203.0.113.5:1234", "1.2.3.4", "203.0.113.5"},                     // not a trusted proxy: its header is ignored
		{"10.1.2.3:80", "198.51.100.7", "198.51.100.7"},                    // one trusted hop
		{"10.1.2.3:80", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"}, // the leftmost could be made up
		{"10.1.2.3:80", "", "10.1.2.3"},
		{"10.1.2.3:80", "garbage, 10.2.2.2", "10.2.2.2"},
		{"192.168.1.1:80", "2001:db8::1", "2001:db8::1"},
		{"[::1]:80", "::ffff:198.51.100.9", "198.51.100.9"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := p.ClientAddr(r); got != c.want {
			t.Errorf("%s with %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
	if _, err := ParseProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR parsed")
	}
}

func TestConnLimit(t *testing.T) {
	l := &ConnLimit{Max: 2}
	r1, ok1 := l.Acquire("a")
	r2, ok2 := l.Acquire("a")
	_, ok3 := l.Acquire("a")
	_, okB := l.Acquire("b")
	if !ok1 || !ok2 || ok3 || !okB {
		t.Fatalf("acquired %v %v %v %v, want true true false true", ok1, ok2, ok3, okB)
	}
	r1()
	r1() // twice: counts once
	if _, ok := l.Acquire("a"); !ok {
		t.Error("a released slot was not given back")
	}
	if _, ok := l.Acquire("a"); ok {
		t.Error("a double release gave two slots back")
	}
	r2()
	var none *ConnLimit
	if _, ok := none.Acquire("a"); !ok {
		t.Error("no limit refused")
	}
}

// FuzzParse feeds Parse arbitrary tokens: it must never panic, and it may
// accept only a token signed with the secret.
func FuzzParse(f *testing.F) {
	tk := &Tokens{Secret: secret}
	good, _ := tk.Mint(Claims{Stream: "a", Role: View}, time.Hour)
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add(good[:len(good)-2])
	f.Fuzz(func(t *testing.T, token string) {
		c, err := tk.Parse(token)
		if err == nil && token != good {
			if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
				t.Fatalf("accepted %q, which jwt rejects: %v", token, err)
			}
		}
		if err == nil && c == nil {
			t.Fatal("no claims and no error")
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("error %v is not an *Error", err)
		}
	})
}

// BenchmarkCheck is what a request for a private stream pays for its
// token: the Policy's path (the token from the query; parse and verify
// with golang-jwt, or the remembered claims of a token verified before;
// then stream and role), for a valid view token, as a viewer's every
// request after its first, and for one signed with another secret.
func BenchmarkCheck(b *testing.B) {
	p := &Policy{Tokens: Tokens{Secret: secret}, PrivateStreams: []string{"team-*"}}
	valid, err := p.Tokens.Mint(Claims{Stream: "team-a", Role: View}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	other := &Tokens{Secret: []byte("another secret of 32 bytes......")}
	forged, err := other.Mint(Claims{Stream: "team-a", Role: View}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
		want        error
	}{
		{"valid", valid, nil},
		{"wrong_signature", forged, ErrTokenInvalid},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/live/team-a/720p/seg1.mp4?token="+c.token, nil)
			if _, err := p.Require(r, "team-a", View); err != c.want {
				b.Fatalf("err %v, want %v", err, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Require(r, "team-a", View)
			}
		})
	}
}

// TestRememberedTokens: a Policy remembers verified tokens, and still
// refuses one for another stream or role, and one that has expired since.
func TestRememberedTokens(t *testing.T) {
	p := &Policy{Tokens: Tokens{Secret: secret, Leeway: time.Millisecond}}
	tok, err := p.Tokens.Mint(Claims{Stream: "s", Role: View}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/live/s/index.m3u8?token="+tok, nil)
	for range 2 { // verified, then remembered
		if c, err := p.Require(req, "s", View); err != nil || c.Stream != "s" {
			t.Fatalf("claims %v, err %v", c, err)
		}
	}
	if _, err := p.Require(req, "t", View); !errors.Is(err, ErrWrongStream) {
		t.Errorf("remembered token for another stream: %v", err)
	}
	if _, err := p.Require(req, "s", Moderate); !errors.Is(err, ErrWrongRole) {
		t.Errorf("remembered token for a higher role: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := p.Require(req, "s", View)
		if errors.Is(err, ErrTokenExpired) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("after its expiry: %v, want %v", err, ErrTokenExpired)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
