package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// k8sObject is one decoded manifest document.
type k8sObject struct {
	file string
	kind string
	name string
	obj  any // a pointer to the k8s.io/api type of its kind
}

// newObject returns a new value of the API type for apiVersion and kind,
// or nil when the manifests are not expected to hold that kind.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Service":
		return &corev1.Service{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	}
	return nil
}

// splitDocs splits a YAML stream on its "---" lines; empty and
// comment-only documents are left out.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		keep := false
		for line := range strings.SplitSeq(cur.String(), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				keep = true
			}
		}
		if keep {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if string(bytes.TrimRight(line, " \r")) == "---" {
			flush()
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// decodeManifest decodes one YAML document strictly into its API type, as
// the API server's strict field validation does: a field the type does
// not have (a misspelling, a wrong case, a field at the wrong level), a
// duplicate key or a value of the wrong type is an error.
func decodeManifest(doc []byte) (kind, name string, obj any, err error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "", "", nil, err
	}
	obj = newObject(head.APIVersion, head.Kind)
	if obj == nil {
		return "", "", nil, fmt.Errorf("apiVersion %q kind %q: not a kind these manifests use", head.APIVersion, head.Kind)
	}
	// as the API server decodes: field names case-sensitive, unknown and
	// duplicate fields refused
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return "", "", nil, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	if head.Metadata.Name == "" {
		return "", "", nil, fmt.Errorf("%s without metadata.name", head.Kind)
	}
	return head.Kind, head.Metadata.Name, obj, nil
}

// loadManifests decodes every document of every deploy/k8s/*.yaml.
func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	if len(files) == 0 {
		t.Fatal("no k8s/*.yaml")
	}
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(b) {
			kind, name, obj, err := decodeManifest(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			objs = append(objs, k8sObject{file: f, kind: kind, name: name, obj: obj})
		}
	}
	return objs
}

// find returns the one object of kind and name, failing the test if absent.
func find[T any](t *testing.T, objs []k8sObject, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.obj.(*T)
		}
	}
	t.Fatalf("no %s %q in deploy/k8s", kind, name)
	return nil
}

// TestManifestsStrict: the strict decoding refuses what a typo makes of a
// manifest, at the top and deep down, so that TestManifests can be trusted.
func TestManifestsStrict(t *testing.T) {
	b, err := os.ReadFile("k8s/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := decodeManifest(b); err != nil {
		t.Fatalf("deployment.yaml as written: %v", err)
	}
	cases := []struct{ name, from, to, want string }{
		{"misspelt spec field", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", "unknown field"},
		{"misspelt probe", "readinessProbe:", "readinesProbe:", "unknown field"},
		{"misspelt deep field", "secretKeyRef:", "secretKeyref:", "unknown field"},
		{"wrong case", "fieldPath: status.podIP", "fieldpath: status.podIP", "unknown field"},
		{"field at the wrong level", "      terminationGracePeriodSeconds: 60\n", "      terminationGracePeriodSeconds: 60\n      preStop: {}\n", "unknown field"},
		{"wrong type", "replicas: 2", "replicas: two", "replicas"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", "not a kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := bytes.Replace(b, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(bad, b) {
				t.Fatalf("%q not in deployment.yaml", c.from)
			}
			_, _, _, err := decodeManifest(bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("decode with %q: %v, want an error containing %q", c.to, err, c.want)
			}
		})
	}
	dup := bytes.Replace(b, []byte("  replicas: 2\n"), []byte("  replicas: 2\n  replicas: 3\n"), 1)
	if _, _, _, err := decodeManifest(dup); err == nil {
		t.Error("a duplicate key was accepted")
	}
}

// TestManifests decodes deploy/k8s strictly into the k8s.io/api types and
// checks that the pieces fit: the selectors, the probes, the drain on stop,
// the configuration the gateway reads, NATS with JetStream at 2.11 or later.
func TestManifests(t *testing.T) {
	objs := loadManifests(t)
	dep := find[appsv1.Deployment](t, objs, "Deployment", "livegate")
	svc := find[corev1.Service](t, objs, "Service", "livegate")
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "livegate")
	pdb := find[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "livegate")
	hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, objs, "HorizontalPodAutoscaler", "livegate")
	nats := find[appsv1.StatefulSet](t, objs, "StatefulSet", "nats")
	natsSvc := find[corev1.Service](t, objs, "Service", "nats")

	pod := dep.Spec.Template
	labels := pod.Labels
	matches := func(what string, sel map[string]string, labels map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s: empty selector", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not carry (%v)", what, k, v, labels)
			}
		}
	}
	matches("Deployment", dep.Spec.Selector.MatchLabels, labels)
	matches("Service livegate", svc.Spec.Selector, labels)
	matches("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels, labels)
	matches("Service nats", natsSvc.Spec.Selector, nats.Spec.Template.Labels)
	if r := hpa.Spec.ScaleTargetRef; r.Kind != "Deployment" || r.Name != dep.Name || r.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want the Deployment %s", r, dep.Name)
	}
	if len(hpa.Spec.Metrics) == 0 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("HPA metrics %+v: want CPU", hpa.Spec.Metrics)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("HPA minReplicas below 2: a pod that stops has nowhere to hand its streams")
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Error("no CPU request: the HPA's utilization needs one")
	}
	port := ""
	for _, p := range c.Ports {
		if p.ContainerPort == 8080 {
			port = p.Name
		}
	}
	if port == "" {
		t.Error("container port 8080 not declared")
	}
	if svc.Spec.Ports[0].TargetPort.String() != port && svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("Service targets %s, not the gateway's port", svc.Spec.Ports[0].TargetPort.String())
	}
	for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: want an HTTP GET of /healthz", name)
		}
	}
	// the drain: a pause in preStop, then SIGTERM (1012 restart to the
	// publishers), within the grace period
	pause := 0
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop hook: publishers told to reconnect could reach the stopping pod again")
	} else if h := c.Lifecycle.PreStop; h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep" {
		pause, _ = strconv.Atoi(h.Exec.Command[1])
	} else if h.Sleep != nil {
		pause = int(h.Sleep.Seconds)
	}
	if pause < 5 {
		t.Errorf("preStop pauses %d s: want at least 5 s for the endpoints to drop the pod", pause)
	}
	// after the pause: ingest grace (10 s) for the handoff, the
	// transcoders' stop and the server's 5 s shutdown
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < int64(pause)+30 {
		t.Errorf("terminationGracePeriodSeconds %v: want at least the preStop pause + 30 s", g)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if a := env["LIVEGATE_ADVERTISE"].Value; !strings.Contains(a, "$(POD_IP)") || env["POD_IP"].ValueFrom == nil {
		t.Errorf("LIVEGATE_ADVERTISE %q: want the pod's own address (from POD_IP)", a)
	}
	if e := env["LIVEGATE_PUBLISH_KEY"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Error("LIVEGATE_PUBLISH_KEY does not come from a Secret")
	}

	// the configuration: mounted where --config points, keys the gateway knows
	cfgPath := ""
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && filepath.Dir(cfgPath) == m.MountPath {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--config %q is not in the mounted ConfigMap %s", cfgPath, cm.Name)
	}
	conf := cm.Data[filepath.Base(cfgPath)]
	checkConfigKeys(t, conf)
	var cfg struct {
		NATSURL string `json:"nats_url"`
	}
	json.Unmarshal([]byte(conf), &cfg)
	if !strings.Contains(cfg.NATSURL, "//"+natsSvc.Name+":4222") {
		t.Errorf("nats_url %q: want the Service %s", cfg.NATSURL, natsSvc.Name)
	}
	// the real gateway reads it (strictly: an unknown key stops it)
	f := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(f, []byte(conf), 0o644)
	cmd := command(t, gatewayBinary(t), "--config", f, "--print-config")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("livegate --config (the ConfigMap's): %v\n%s", err, out)
	}

	// NATS: JetStream on, 2.11 or later (per-message TTLs)
	nc := nats.Spec.Template.Spec.Containers[0]
	if !slices.Contains(nc.Args, "-js") && !slices.Contains(nc.Args, "--jetstream") {
		t.Errorf("nats args %v: JetStream (-js) is off", nc.Args)
	}
	if !natsAtLeast(nc.Image, 2, 11) {
		t.Errorf("nats image %q: want nats:2.11 or later (per-message TTLs)", nc.Image)
	}
}

// natsAtLeast reports whether image is nats:MAJOR.MINOR[...] at least
// major.minor.
func natsAtLeast(image string, major, minor int) bool {
	m := regexp.MustCompile(`^(?:docker\.io/)?(?:library/)?nats:(\d+)\.(\d+)`).FindStringSubmatch(image)
	if m == nil {
		return false
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a > major || a == major && b >= minor
}

// checkConfigKeys checks that conf is a JSON object whose keys are all
// keys of cmd/livegate/default.json, each with a value of the same JSON
// type.
func checkConfigKeys(t *testing.T, conf string) {
	t.Helper()
	b, err := os.ReadFile("../cmd/livegate/default.json")
	if err != nil {
		t.Fatal(err)
	}
	var defaults, got map[string]any
	if err := json.Unmarshal(b, &defaults); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(conf), &got); err != nil {
		t.Fatalf("config JSON: %v\n%s", err, conf)
	}
	for k, v := range got {
		d, ok := defaults[k]
		if !ok {
			t.Errorf("config key %q: not a livegate key", k)
			continue
		}
		if fmt.Sprintf("%T", d) != fmt.Sprintf("%T", v) {
			t.Errorf("config key %q: %T, want %T", k, v, d)
		}
	}
}
