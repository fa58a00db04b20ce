package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// How the gateway serves HTTPS: with a certificate pair from files
// (tls_cert, tls_key), read again when the files change, or with
// certificates obtained and renewed over ACME (acme_domains) by
// golang.org/x/crypto/acme/autocert, validated by TLS-ALPN-01 on the
// listening address itself.

// certCheckEvery is how often at most the certificate files are looked at
// for a change.
const certCheckEvery = 5 * time.Second

// expiryWarning is how close to its end a served certificate makes the
// gateway warn: autocert renews 30 days ahead, certbot and the like about as
// early, so a certificate this close to its end was not renewed.
const expiryWarning = 7 * 24 * time.Hour

// tlsConfig returns the TLS configuration to serve with, and the host name
// its certificates are for (to print URLs with), or nil when the gateway
// serves plain HTTP. It reads the certificate files, or the ACME CA file,
// once here, so that a bad one stops the start.
func (g *gateway) tlsConfig(log *slog.Logger) (*tls.Config, string, error) {
	switch {
	case g.tlsCert != "":
		cf := &certFiles{CertFile: g.tlsCert, KeyFile: g.tlsKey, CheckEvery: certCheckEvery, Logger: log}
		if err := cf.Load(); err != nil {
			return nil, "", err
		}
		host := ""
		if names := cf.cert.Leaf.DNSNames; len(names) > 0 && !strings.HasPrefix(names[0], "*") {
			host = names[0]
		}
		return &tls.Config{GetCertificate: cf.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}, host, nil
	case len(g.acmeDomains) > 0:
		ac, err := newACMECerts(g.acmeDomains, g.acmeDirectory, g.acmeCA, filepath.Join(g.data, "acme"), log)
		if err != nil {
			return nil, "", err
		}
		conf := ac.manager.TLSConfig() // h2, http/1.1 and acme-tls/1 (the challenge)
		conf.GetCertificate = ac.GetCertificate
		return conf, strings.ToLower(g.acmeDomains[0]), nil
	}
	return nil, "", nil
}

// plainWarning returns the warning to log when the gateway serves plain
// HTTP on addr, or "" when addr is loopback only (where browsers treat the
// page as secure) or TLS is on.
func plainWarning(addr net.Addr, tlsOn bool) string {
	if tlsOn {
		return ""
	}
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsLoopback() {
		return ""
	}
	return "serving plain HTTP beyond loopback: browsers on other machines get no camera on the broadcaster page " +
		"(they need https:// or localhost); set --acme-domain or --tls-cert and --tls-key, or serve through a TLS front (deploy/nginx)"
}

// certFiles serves the certificate pair of two PEM files, and reads them
// again when either changes (size, modification time or the file itself,
// as when a symbolic link is pointed elsewhere), looked at no more than once
// per CheckEvery, during a handshake: a renewed certificate is served
// without a restart. A new pair that does not load (a key that does not
// match, half-written files) leaves the previous one in service and is
// logged; it is tried again when the files change again.
type certFiles struct {
	CertFile, KeyFile string
	CheckEvery        time.Duration // 0: on every handshake
	Logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    [2]os.FileInfo // of the pair last read, or last tried
	checked time.Time
	lastErr string // the last error logged, to log each once
}

// Load reads the pair; the error names the key of the file at fault.
func (c *certFiles) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, err := os.Stat(c.CertFile)
	if err != nil {
		return fmt.Errorf("tls_cert: %w", err)
	}
	ki, err := os.Stat(c.KeyFile)
	if err != nil {
		return fmt.Errorf("tls_key: %w", err)
	}
	cert, err := loadPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("tls_cert, tls_key: %s and %s: %w", c.CertFile, c.KeyFile, err)
	}
	c.cert, c.seen, c.checked = &cert, [2]os.FileInfo{ci, ki}, time.Now()
	c.logLoaded("tls: certificate loaded", cert.Leaf)
	return nil
}

// GetCertificate is the tls.Config hook: the current pair, read again
// first if the files changed.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.CheckEvery {
		c.checked = now
		c.reload()
	}
	return c.cert, nil
}

// reload reads the pair again if the files changed. c.mu is held.
func (c *certFiles) reload() {
	ci, err := os.Stat(c.CertFile)
	var ki os.FileInfo
	if err == nil {
		ki, err = os.Stat(c.KeyFile)
	}
	if err != nil { // being replaced, or gone: keep serving what we have
		c.fail("tls: certificate files unreadable, serving the previous certificate", err)
		return
	}
	if sameFile(c.seen[0], ci) && sameFile(c.seen[1], ki) {
		return
	}
	c.seen = [2]os.FileInfo{ci, ki}
	cert, err := loadPair(c.CertFile, c.KeyFile)
	if err != nil {
		c.fail("tls: new certificate files do not load, serving the previous certificate", err)
		return
	}
	c.cert, c.lastErr = &cert, ""
	c.logLoaded("tls: certificate reloaded", cert.Leaf)
}

// fail logs an error once until another one, or a success, comes.
func (c *certFiles) fail(msg string, err error) {
	if err.Error() == c.lastErr {
		return
	}
	c.lastErr = err.Error()
	c.Logger.Error(msg, "cert", c.CertFile, "key", c.KeyFile, "error", err)
}

func (c *certFiles) logLoaded(msg string, leaf *x509.Certificate) {
	c.Logger.Info(msg, "cert", c.CertFile, "names", certNames(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	if time.Until(leaf.NotAfter) < expiryWarning {
		c.Logger.Warn("tls: the certificate ends soon or has ended: renew it (the files are read again when they change)",
			"cert", c.CertFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// loadPair reads a certificate and its key, the leaf parsed.
func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil && cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	return cert, err
}

// sameFile reports whether a and b describe the same unchanged file.
func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func certNames(leaf *x509.Certificate) string {
	names := append([]string{}, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return strings.Join(names, ",")
}

// acmeCerts obtains and renews certificates for a few names over ACME with
// autocert, and adds what autocert leaves out: a failed attempt is logged,
// and the next one waits, a minute (as autocert does) doubling with each
// failure in a row up to an hour, so that a broken setup does not run into
// the CA's rate limits; a certificate that comes near its end without
// renewal is logged too (autocert renews in the background, 30 days ahead,
// and tells nobody when that fails).
type acmeCerts struct {
	manager *autocert.Manager
	log     *slog.Logger
	domains map[string]bool
	get     func(*tls.ClientHelloInfo) (*tls.Certificate, error) // the manager's
	now     func() time.Time

	mu     sync.Mutex
	failed map[string]acmeFailure
	ready  map[string]bool      // names whose certificate was logged
	warned map[string]time.Time // when a name's near end was last logged
}

// acmeFailure is the last failed attempt at a name's certificate.
type acmeFailure struct {
	n     int       // failures in a row
	until time.Time // no new attempt before
	err   error
}

// newACMECerts returns the certificates of domains from the ACME server at
// directory, trusting the roots of the PEM file caFile (if any) besides the
// system's, kept in cacheDir/<server>.
func newACMECerts(domains []string, directory, caFile, cacheDir string, log *slog.Logger) (*acmeCerts, error) {
	client := &acme.Client{DirectoryURL: directory, UserAgent: "livegate"}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("acme_ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme_ca: %s holds no PEM certificate", caFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		client.HTTPClient = &http.Client{Transport: tr}
	}
	a := &acmeCerts{log: log, domains: map[string]bool{}, now: time.Now, failed: map[string]acmeFailure{},
		ready: map[string]bool{}, warned: map[string]time.Time{}}
	for _, d := range domains {
		a.domains[strings.ToLower(d)] = true
	}
	a.manager = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(cacheDir, cacheName(directory))),
		HostPolicy: autocert.HostWhitelist(domains...),
		Client:     client,
	}
	a.get = a.manager.GetCertificate
	log.Info("acme: certificates obtained on demand", "directory", directory, "domains", strings.Join(domains, ","),
		"cache", filepath.Join(cacheDir, cacheName(directory)))
	return a, nil
}

// cacheName names the cache directory of an ACME server, so that
// certificates of a test server (Let's Encrypt staging) are never served
// once the production one is configured.
func cacheName(directory string) string {
	u, err := url.Parse(directory)
	if err != nil {
		return "default"
	}
	return unsafeInName.ReplaceAllString(strings.Trim(u.Host+u.Path, "/"), "_")
}

// unsafeInName matches what cacheName replaces.
var unsafeInName = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// GetCertificate is the tls.Config hook around autocert's.
func (a *acmeCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if isChallenge(hello) || !a.domains[name] {
		// the CA's challenge, or a name autocert refuses (scanners, IP addresses)
		return a.get(hello)
	}
	a.mu.Lock()
	f := a.failed[name]
	a.mu.Unlock()
	if now := a.now(); now.Before(f.until) {
		return nil, fmt.Errorf("acme: no certificate for %s, next attempt in %s: %w", name, f.until.Sub(now).Round(time.Second), f.err)
	}
	cert, err := a.get(hello)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if err != nil {
		f := a.failed[name]
		if now.Before(f.until) {
			return nil, err // a handshake that waited for the same attempt: logged once
		}
		f.n++
		f.err = err
		f.until = now.Add(min(time.Minute<<(f.n-1), time.Hour))
		a.failed[name] = f
		a.log.Error("acme: no certificate", "domain", name, "failures", f.n, "next_attempt", f.until.Sub(now).String(), "error", err)
		return nil, err
	}
	delete(a.failed, name)
	leaf := cert.Leaf
	if leaf == nil {
		return cert, nil
	}
	if !a.ready[name] {
		a.ready[name] = true
		a.log.Info("acme: certificate ready", "domain", name, "issuer", leaf.Issuer.CommonName,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if leaf.NotAfter.Sub(now) < expiryWarning && now.Sub(a.warned[name]) >= time.Hour {
		a.warned[name] = now
		a.log.Warn("acme: the certificate ends soon and renewal has not succeeded yet", "domain", name,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// isChallenge reports whether a handshake is a CA's TLS-ALPN-01
// validation, which offers that one protocol only.
func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// validDomain matches a DNS name autocert can get a certificate for: at
// least two labels, no wildcard, no trailing dot.
var validDomain = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validateTLS checks the TLS keys of the configuration.
func (c *config) validateTLS() error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return errors.New("tls_key: must be set with tls_cert (the certificate's private key file)")
	case c.TLSKey != "" && c.TLSCert == "":
		return errors.New("tls_cert: must be set with tls_key (the certificate file)")
	}
	u, err := url.Parse(c.ACMEDirectory)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("acme_directory: %q must be an https:// URL", c.ACMEDirectory)
	}
	if len(c.ACMEDomains) == 0 {
		return nil
	}
	if c.TLSCert != "" {
		return errors.New("acme_domains: cannot be used with tls_cert and tls_key: choose certificates from ACME or from files")
	}
	if c.Data == "" {
		return errors.New("acme_domains: needs data (--data DIR): certificates and the ACME account are kept in DIR/acme")
	}
	for i, d := range c.ACMEDomains {
		if len(d) > 253 || !validDomain.MatchString(d) || net.ParseIP(d) != nil {
			return fmt.Errorf("acme_domains[%d]: %q must be a DNS name with at least one dot (no IP address, no wildcard; IDNs in punycode)", i, d)
		}
	}
	return nil
}

// splitList splits a comma-separated list, dropping spaces and empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
