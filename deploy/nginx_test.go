package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNginxConfigs runs nginx -t on single.conf and compose.conf, each
// alone and with tls.conf, with the paths, the gateways' host names and
// the certificate replaced as deploy/check.sh does: what users include
// must at least load. (TestEdge runs single.conf for real.)
func TestNginxConfigs(t *testing.T) {
	bin := needTool(t, "nginx")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "livegate"), 0o755)
	writeCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "live.example.com")
	replace := strings.NewReplacer(
		"/etc/nginx/livegate/", dir+"/livegate/",
		"/var/cache/nginx/livegate", dir+"/cache",
		"/run/nginx-livegate-collapse.sock", dir+"/collapse.sock",
		"gateway1:8080", "127.0.0.1:8081", "gateway2:8080", "127.0.0.1:8082", "gateway3:8080", "127.0.0.1:8083",
		"/etc/letsencrypt/live/live.example.com/fullchain.pem", dir+"/cert.pem",
		"/etc/letsencrypt/live/live.example.com/privkey.pem", dir+"/key.pem",
		"/var/www/letsencrypt", dir+"/www",
	)
	for _, f := range []string{"locations.conf", "collapse.conf", "single.conf", "compose.conf", "tls.conf"} {
		b, err := os.ReadFile(filepath.Join("nginx", f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if f == "locations.conf" || f == "collapse.conf" {
			dst = filepath.Join(dir, "livegate", f)
		}
		os.WriteFile(dst, []byte(replace.Replace(string(b))), 0o644)
	}
	for _, c := range []struct{ name, includes string }{
		{"single.conf", "single.conf"},
		{"compose.conf", "compose.conf"},
		{"single.conf + tls.conf", "single.conf tls.conf"},
		{"compose.conf + tls.conf", "compose.conf tls.conf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var inc strings.Builder
			for _, f := range strings.Fields(c.includes) {
				inc.WriteString("include " + filepath.Join(dir, f) + "; ")
			}
			main := filepath.Join(dir, "nginx-"+strings.ReplaceAll(c.includes, " ", "+"))
			os.WriteFile(main, []byte("pid "+dir+"/nginx.pid;\nerror_log stderr;\nevents {}\nhttp { access_log off; "+inc.String()+"}\n"), 0o644)
			out, err := exec.Command(bin, "-t", "-q", "-c", main, "-p", dir).CombinedOutput()
			if err != nil {
				t.Errorf("nginx -t: %v\n%s", err, out)
			}
		})
	}
}

// writeCert writes a throwaway self-signed certificate for host.
func writeCert(t *testing.T, certFile, keyFile, host string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}
