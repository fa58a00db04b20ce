package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme/autocert"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".json")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*config) bool
		wantErr string // substring; "" for success
	}{
		{"embedded defaults", nil, nil, func(c *config) bool {
			return c.Listen == "127.0.0.1:8080" && len(c.Ladder) == 3 && c.HLSVariant == "lowlatency" && len(c.PublishKeys) == 0 &&
				c.Data == "" && c.Record && c.RecordKeep == 5 && chatWait(c.ChatFlushInterval) == 150*time.Millisecond && chatWait(c.ChatFlushPerConn) == 15*time.Microsecond &&
				c.HTTPHeaderTimeout == duration(10*time.Second) && c.HTTPIdleTimeout == duration(2*time.Minute)
		}, ""},
		{"recording off", []string{"--data", "/tmp/x", "--config", "FILE:{\"record\":false}"}, nil,
			func(c *config) bool { return c.Data == "/tmp/x" && !c.Record }, ""},
		{"record_keep", []string{"--config", "FILE:{\"record_keep\":0}"}, nil, nil, "record_keep"},
		{"env", nil, map[string]string{"LIVEGATE_LISTEN": "127.0.0.1:9000", "LIVEGATE_PUBLISH_KEY": "k1"},
			func(c *config) bool { return c.Listen == "127.0.0.1:9000" && c.PublishKeys[0] == "k1" }, ""},
		{"flag over env", []string{"--listen", "127.0.0.1:9001"}, map[string]string{"LIVEGATE_LISTEN": "127.0.0.1:9000"},
			func(c *config) bool { return c.Listen == "127.0.0.1:9001" }, ""},
		{"file subset", []string{"--config", "FILE:{\"hls_variant\":\"mpegts\",\"hls_segment_count\":4}"}, nil,
			func(c *config) bool { return c.HLSVariant == "mpegts" && c.HLSSegmentCount == 4 && len(c.Ladder) == 3 }, ""},
		{"unknown key", []string{"--config", "FILE:{\"listne\":\"x\"}"}, nil, nil, `unknown field "listne"`},
		{"bad listen", []string{"--listen", "nope"}, nil, nil, "listen:"},
		{"bad duration", []string{"--config", "FILE:{\"ingest_grace\":\"soon\"}"}, nil, nil, "soon"},
		{"grace too short", []string{"--config", "FILE:{\"ingest_grace\":\"10ms\"}"}, nil, nil, "ingest_grace"},
		{"ll needs 7 segments", []string{"--config", "FILE:{\"hls_segment_count\":3}"}, nil, nil, "hls_segment_count"},
		{"bad variant", []string{"--config", "FILE:{\"hls_variant\":\"dash\"}"}, nil, nil, "hls_variant"},
		{"bad rung name", []string{"--config", "FILE:{\"ladder\":[{\"name\":\"../x\",\"height\":360,\"video_kbps\":600,\"maxrate_kbps\":700,\"bufsize_kbits\":1200}]}"}, nil, nil, "ladder[0].name"},
		{"upscaling ladder order", []string{"--config", "FILE:{\"ladder\":[{\"name\":\"a\",\"height\":360,\"video_kbps\":600,\"maxrate_kbps\":700,\"bufsize_kbits\":1200},{\"name\":\"b\",\"height\":720,\"video_kbps\":2500,\"maxrate_kbps\":2600,\"bufsize_kbits\":5000}]}"}, nil, nil, "ladder"},
		{"nats url scheme", []string{"--nats-url", "http://x"}, nil, nil, "nats_url"},
		{"key with space", []string{"--publish-key", "a b"}, nil, nil, "publish_keys[0]"},
		{"chat flush off", []string{"--config", "FILE:{\"chat_flush_interval\":\"0s\"}"}, nil,
			func(c *config) bool { return chatWait(c.ChatFlushInterval) < 0 }, ""},
		{"chat flush per connection off", []string{"--config", "FILE:{\"chat_flush_per_conn\":\"0s\"}"}, nil,
			func(c *config) bool { return chatWait(c.ChatFlushPerConn) < 0 }, ""},
		{"chat flush per connection too long", []string{"--config", "FILE:{\"chat_flush_per_conn\":\"2s\"}"}, nil, nil, "chat_flush_per_conn"},
		{"chat flush too long", []string{"--config", "FILE:{\"chat_flush_interval\":\"2s\"}"}, nil, nil, "chat_flush_interval"},
		{"http timeouts", []string{"--config", "FILE:{\"http_header_timeout\":\"5s\",\"http_idle_timeout\":\"30s\"}"}, nil,
			func(c *config) bool {
				return c.HTTPHeaderTimeout == duration(5*time.Second) && c.HTTPIdleTimeout == duration(30*time.Second)
			}, ""},
		{"allow origin with a newline", []string{"--config", "FILE:{\"live_allow_origin\":\"https://a.example\\r\\nX: y\"}"}, nil, nil, "live_allow_origin"},
		{"http idle timeout too short", []string{"--config", "FILE:{\"http_idle_timeout\":\"0s\"}"}, nil, nil, "http_idle_timeout"},
		{"http header timeout too short", []string{"--config", "FILE:{\"http_header_timeout\":\"1ms\"}"}, nil, nil, "http_header_timeout"},
		{"tls and acme off by default, Let's Encrypt production", nil, nil, func(c *config) bool {
			return c.TLSCert == "" && c.TLSKey == "" && len(c.ACMEDomains) == 0 && c.ACMEDirectory == autocert.DefaultACMEDirectory &&
				c.ACMECA == ""
		}, ""},
		{"tls files", []string{"--tls-cert", "/c.pem", "--tls-key", "/k.pem"}, nil,
			func(c *config) bool { return c.TLSCert == "/c.pem" && c.TLSKey == "/k.pem" }, ""},
		{"tls files env", nil, map[string]string{"LIVEGATE_TLS_CERT": "/c.pem", "LIVEGATE_TLS_KEY": "/k.pem"},
			func(c *config) bool { return c.TLSCert == "/c.pem" && c.TLSKey == "/k.pem" }, ""},
		{"tls cert without key", []string{"--tls-cert", "/c.pem"}, nil, nil, "tls_key:"},
		{"tls key without cert", nil, map[string]string{"LIVEGATE_TLS_KEY": "/k.pem"}, nil, "tls_cert:"},
		{"acme domains env", []string{"--data", "/d"}, map[string]string{"LIVEGATE_ACME_DOMAIN": "a.example, b.example,", "LIVEGATE_ACME_CA": "/ca.pem",
			"LIVEGATE_ACME_DIRECTORY": "https://127.0.0.1:14000/dir"},
			func(c *config) bool {
				return reflect.DeepEqual(c.ACMEDomains, []string{"a.example", "b.example"}) && c.ACMECA == "/ca.pem" &&
					c.ACMEDirectory == "https://127.0.0.1:14000/dir"
			}, ""},
		{"acme domain flags", []string{"--data", "/d", "--acme-domain", "a.example", "--acme-domain", "b.example,c.example",
			"--acme-directory", "https://acme-staging-v02.api.letsencrypt.org/directory"},
			map[string]string{"LIVEGATE_ACME_DOMAIN": "env.example"},
			func(c *config) bool {
				return reflect.DeepEqual(c.ACMEDomains, []string{"a.example", "b.example", "c.example"}) &&
					c.ACMEDirectory == "https://acme-staging-v02.api.letsencrypt.org/directory"
			}, ""},
		{"acme domains file", []string{"--config", "FILE:{\"data\":\"/d\",\"acme_domains\":[\"Live.Example.com\"]}"}, nil,
			func(c *config) bool { return reflect.DeepEqual(c.ACMEDomains, []string{"Live.Example.com"}) }, ""},
		{"acme needs data", []string{"--acme-domain", "a.example"}, nil, nil, "acme_domains: needs data"},
		{"acme or files", []string{"--data", "/d", "--acme-domain", "a.example", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"}, nil, nil, "acme_domains: cannot"},
		{"acme single label", []string{"--data", "/d", "--acme-domain", "localhost"}, nil, nil, "acme_domains[0]"},
		{"acme wildcard", []string{"--data", "/d", "--acme-domain", "a.example,*.a.example"}, nil, nil, "acme_domains[1]"},
		{"acme ip", []string{"--data", "/d", "--acme-domain", "192.0.2.1"}, nil, nil, "acme_domains[0]"},
		{"acme empty label", []string{"--data", "/d", "--acme-domain", "a..example"}, nil, nil, "acme_domains[0]"},
		{"acme trailing dot", []string{"--data", "/d", "--acme-domain", "a.example."}, nil, nil, "acme_domains[0]"},
		{"acme directory over http", []string{"--acme-directory", "http://127.0.0.1:14000/dir"}, nil, nil, "acme_directory"},
		{"acme directory not a URL", []string{"--config", "FILE:{\"acme_directory\":\"letsencrypt\"}"}, nil, nil, "acme_directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{}, c.args...)
			for i, a := range args {
				if body, ok := strings.CutPrefix(a, "FILE:"); ok {
					args[i] = file(body)
				}
			}
			cfg, err := load(args, func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(cfg) {
				t.Errorf("unexpected config: %+v", cfg)
			}
		})
	}
}

func TestFFmpegArgs(t *testing.T) {
	cfg, err := load(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		size    string
		want    []string // substrings of the joined list, in order
		wantErr bool
	}{
		{"1280x720", []string{"-f matroska", "-i pipe:0", "scale=1280:720", "scale=854:480", "scale=640:360", "-preset superfast", "pipe:1"}, false},
		{"720x1280", []string{"scale=720:1280", "scale=360:640"}, false},
		{"640x480", []string{"scale=640:480", "scale=480:360"}, false},
		{"1280", nil, true},
		{"0x720", nil, true},
		{"1280x720x1", nil, true},
		{"-1x5", nil, true},
		{"", nil, true},
	}
	for _, c := range cases {
		t.Run(c.size, func(t *testing.T) {
			args, err := cfg.ffmpegArgs(c.size)
			if c.wantErr {
				if err == nil {
					t.Fatalf("ffmpegArgs(%q) = %q, want an error", c.size, args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(args, " ")
			rest := joined
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("args %q: missing %q (in order)", joined, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// TestEveryKeyReachesAComponent changes each key of the embedded defaults
// in turn and checks that the components built from the configuration
// differ: a key that reaches none is documented but does nothing.
func TestEveryKeyReachesAComponent(t *testing.T) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(defaultJSON, &keys); err != nil {
		t.Fatal(err)
	}
	// values other than the defaults, for the keys a rule cannot derive
	other := map[string]string{
		"listen":            `"127.0.0.1:9999"`,
		"data":              `"/tmp/livegate-other"`,
		"publish_keys":      `["k"]`,
		"nats_url":          `"nats://127.0.0.1:4333"`,
		"advertise":         `"http://10.0.0.1:8080"`,
		"cluster_bucket":    `"livegate_other"`,
		"ffmpeg":            `"/usr/local/bin/ffmpeg"`,
		"ladder":            `[{"name":"360p","height":360,"video_kbps":600,"maxrate_kbps":642,"bufsize_kbits":1200}]`,
		"x264_preset":       `"veryfast"`,
		"hls_variant":       `"fmp4"`,
		"live_allow_origin": `"https://a.example"`,
		"allowed_origins":   `["https://a.example"]`,
		"token_secret":      `"0123456789abcdef0123456789abcdef"`,
		"hls_first_segment": `"500ms"`,
		"private_streams":   `["team-*"]`,
		"trusted_proxies":   `["10.0.0.0/8"]`,
		"tls_cert":          `"/etc/livegate/other-cert.pem"`,
		"tls_key":           `"/etc/livegate/other-key.pem"`,
		"acme_domains":      `["live.example.com"]`,
		"acme_directory":    `"https://acme-staging-v02.api.letsencrypt.org/directory"`,
		"acme_ca":           `"/etc/livegate/acme-ca.pem"`,
	}
	// keys that validate only beside another: changed against a base that
	// sets both
	pairs := map[string]struct{ with, base string }{
		"tls_cert": {`"tls_key":"/etc/livegate/key.pem"`, `"/etc/livegate/cert.pem"`},
		"tls_key":  {`"tls_cert":"/etc/livegate/cert.pem"`, `"/etc/livegate/key.pem"`},
		// private streams are watched with view tokens
		"private_streams": {`"token_secret":"0123456789abcdef0123456789abcdef"`, `[]`},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := plain(load2(t, `{"data":"/tmp/livegate-test"}`).gateway(log))
	for key, def := range keys {
		t.Run(key, func(t *testing.T) {
			v, ok := other[key]
			switch {
			case ok:
			case string(def) == "true" || string(def) == "false":
				v = map[string]string{"true": "false", "false": "true"}[string(def)]
			case def[0] == '"': // a duration: twice as long, or 1s for zero
				d, err := time.ParseDuration(strings.Trim(string(def), `"`))
				if err != nil {
					t.Fatalf("no other value for %s=%s: add one to the table", key, def)
				}
				v = fmt.Sprintf("%q", max(2*d, time.Millisecond).String())
			default: // a number: one more
				n, err := strconv.ParseFloat(string(def), 64)
				if err != nil {
					t.Fatalf("no other value for %s=%s: add one to the table", key, def)
				}
				v = strconv.FormatFloat(n+1, 'f', -1, 64)
			}
			data := `"/tmp/livegate-test"`
			if key == "data" {
				data = v
			}
			base := base
			with := ""
			if p, ok := pairs[key]; ok {
				with = p.with + ", "
				base = plain(load2(t, fmt.Sprintf(`{"data":%s, %s%q:%s}`, data, with, key, p.base)).gateway(log))
			}
			c := load2(t, fmt.Sprintf(`{"data":%s, %s%q:%s}`, data, with, key, v))
			g := c.gateway(log)
			if key == "allowed_origins" { // inside the Origin checks, which plain cannot see
				r, _ := http.NewRequest("GET", "http://127.0.0.1:8080/chat/x", nil)
				r.Header.Set("Origin", "https://a.example")
				if !g.pub.CheckOrigin(r) || !g.rooms.CheckOrigin(r) {
					t.Error("allowed_origins does not reach the Origin checks")
				}
				return
			}
			if key == "trusted_proxies" { // inside the client address functions
				r, _ := http.NewRequest("GET", "http://127.0.0.1:8080/chat/x", nil)
				r.RemoteAddr, r.Header["X-Forwarded-For"] = "10.0.0.1:5000", []string{"203.0.113.9"}
				if g.pub.ClientAddr(r) != "203.0.113.9" {
					t.Error("trusted_proxies does not reach the client addresses")
				}
				return
			}
			if plain(g) == base {
				t.Errorf("%s=%s changes no component", key, v)
			}
		})
	}
}

// load2 loads the embedded defaults and a config file holding body.
func load2(t *testing.T, body string) *config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(file, []byte(body), 0o644)
	c, err := load([]string{"--config", file}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// plain prints the plain values of the gateway and its components, and of
// what they point to: every exported field but functions (loggers and
// registries aside).
func plain(g *gateway) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s %s %v %s %s\n", g.listen, g.data, g.natsURL, g.tlsCert, g.tlsKey, g.acmeDomains, g.acmeDirectory, g.acmeCA)
	seen := map[uintptr]bool{}
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Func, reflect.Chan:
			return
		case reflect.Interface:
			if !v.IsNil() {
				walk(path, v.Elem())
			}
			return
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			switch v.Interface().(type) {
			case *slog.Logger, *prometheus.Registry:
				return
			}
			walk(path, v.Elem())
			return
		case reflect.Struct:
			exported := false
			for i := range v.NumField() {
				if f := v.Type().Field(i); f.IsExported() {
					exported = true
					walk(path+"."+f.Name, v.Field(i))
				}
			}
			if exported {
				return
			}
		}
		fmt.Fprintf(&b, "%s=%v\n", path, v)
	}
	for _, c := range []any{g.hub, g.rooms, g.pub, g.site, g.server, g.dir, g.catalog} {
		walk(reflect.TypeOf(c).Elem().Name(), reflect.ValueOf(c))
	}
	return b.String()
}

// FuzzConfigFile loads arbitrary config files: a file is refused with an
// error or accepted as a configuration that validates and builds a
// gateway, never a panic.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"listen":"127.0.0.1:0"}`, `{"ladder":[]}`, `{"chat_flush_interval":"-1s"}`,
		`{"token_secret":"short"}`, `{"private_streams":["[a"]}`, `{"trusted_proxies":["10.0.0.0/33"]}`,
		`{"max_streams":-1}`, `{"http_max_header_bytes":1}`, `{"hls_variant":"dash"}`, `[1,2]`, `null`, `{"listen":`,
		`{"ladder":[{"name":"a","height":361,"video_kbps":1,"maxrate_kbps":1,"bufsize_kbits":1}]}`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		file := filepath.Join(dir, "c.json")
		if err := os.WriteFile(file, body, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := load([]string{"--config", file}, func(string) string { return "" })
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("load accepted a config that does not validate: %v", err)
		}
		c.gateway(log)
	})
}
