package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// composeFile is the part of the Compose specification compose.yaml uses.
// Decoding is strict: a key not listed here (a misspelling, or a feature
// the file did not use before) fails TestCompose, which then needs a look
// (and a field here).
type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes"`
}

type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
	StopGracePeriod string `json:"stop_grace_period"`
	Restart         string `json:"restart"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

// decodeCompose decodes a compose file strictly (case-sensitive keys,
// no unknown or duplicate ones).
func decodeCompose(b []byte) (*composeFile, error) {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, err
	}
	var c composeFile
	strict, err := sigsjson.UnmarshalStrict(j, &c)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%v", strict)
	}
	return &c, nil
}

// TestCompose decodes compose.yaml strictly and checks that it is a
// cluster: NATS 2.11 or later with JetStream, every gateway on it with
// its own --advertise and the shared data volume, nginx routing to every gateway with the
// repository's configuration files.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ from, to string }{
		{"    environment:\n", "    enviroment:\n"},
		{"stop_grace_period:", "stop_grace_periods:"},
		{"      interval: 5s\n", "      interval: 5s\n      interval: 6s\n"},
	} {
		if !strings.Contains(string(b), bad.from) {
			t.Fatalf("compose.yaml has no %q", bad.from)
		}
		if _, err := decodeCompose([]byte(strings.Replace(string(b), bad.from, bad.to, 1))); err == nil {
			t.Errorf("compose.yaml with %q instead of %q was accepted", bad.to, bad.from)
		}
	}
	c, err := decodeCompose(b)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}

	nats, ok := c.Services["nats"]
	if !ok {
		t.Fatal("no nats service")
	}
	if !natsAtLeast(nats.Image, 2, 11) {
		t.Errorf("nats image %q: want nats:2.11 or later (per-message TTLs)", nats.Image)
	}
	if !slices.Contains(nats.Command, "-js") {
		t.Errorf("nats command %v: JetStream (-js) is off", nats.Command)
	}

	var gateways []string
	for name, s := range c.Services {
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
			if d.Condition == "service_healthy" && target.Healthcheck == nil {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		if !strings.HasPrefix(name, "gateway") {
			continue
		}
		gateways = append(gateways, name)
		env := s.Environment
		if env["LIVEGATE_NATS_URL"] != "nats://nats:4222" {
			t.Errorf("%s: LIVEGATE_NATS_URL %q, want nats://nats:4222", name, env["LIVEGATE_NATS_URL"])
		}
		if want := "http://" + name + ":8080"; env["LIVEGATE_ADVERTISE"] != want {
			t.Errorf("%s: LIVEGATE_ADVERTISE %q, want %s (how the others reach it)", name, env["LIVEGATE_ADVERTISE"], want)
		}
		if env["LIVEGATE_PUBLISH_KEY"] == "" {
			t.Errorf("%s: no LIVEGATE_PUBLISH_KEY", name)
		}
		if !slices.Contains(s.Volumes, "data:/var/lib/livegate") {
			t.Errorf("%s: volumes %v: want the shared data:/var/lib/livegate (one recording per broadcast)", name, s.Volumes)
		}
		if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: not built from deploy/Dockerfile", name)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if len(gateways) < 3 {
		t.Errorf("gateways %v: want three", gateways)
	}

	// nginx: the repository's files, an upstream server for every gateway
	ng, ok := c.Services["nginx"]
	if !ok {
		t.Fatal("no nginx service")
	}
	mounted := map[string]string{}
	for _, v := range ng.Volumes {
		f := strings.Split(v, ":")
		if len(f) < 2 {
			t.Errorf("nginx volume %q", v)
			continue
		}
		if _, err := os.Stat(f[0]); err != nil {
			t.Errorf("nginx volume %q: %v", v, err)
		}
		mounted[filepath.Base(f[0])] = f[1]
	}
	for _, f := range []string{"compose.conf", "locations.conf", "collapse.conf"} {
		if mounted[f] == "" {
			t.Errorf("nginx does not mount nginx/%s", f)
		}
	}
	conf, err := os.ReadFile("nginx/compose.conf")
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([a-z0-9]+):8080[ ;]`).FindAllStringSubmatch(string(conf), -1) {
		servers = append(servers, m[1])
	}
	slices.Sort(gateways)
	slices.Sort(servers)
	if !slices.Equal(gateways, servers) {
		t.Errorf("nginx/compose.conf routes to %v, compose.yaml runs %v", servers, gateways)
	}
	for _, inc := range regexp.MustCompile(`include\s+(\S+);`).FindAllStringSubmatch(string(conf), -1) {
		found := false
		for _, dst := range mounted {
			found = found || dst == inc[1]
		}
		if !found {
			t.Errorf("nginx/compose.conf includes %s, which compose.yaml does not mount", inc[1])
		}
	}
}
