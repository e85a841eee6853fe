package examples

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/replicar/replicar/proxy"
)

// Docker is not run here: these tests check what can be checked without
// it. The files parse, every REPLICAR_* setting they give (on top of the
// image's own ENV) is one replicar accepts, and the pieces refer to each
// other correctly: build targets, service names, ports and probes.

const root = ".."

// dockerfile is what the tests need from the Dockerfile: its stage names
// and the REPLICAR_* variables its final image sets.
type dockerfile struct {
	stages []string
	env    map[string]string
	last   string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	d := dockerfile{env: map[string]string{}}
	from := regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)$`)
	for _, l := range lines {
		if m := from.FindStringSubmatch(l); m != nil {
			d.stages = append(d.stages, m[1])
			d.last = m[1]
			clear(d.env) // ENV belongs to the stage it is in
			continue
		}
		if rest, ok := strings.CutPrefix(l, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					d.env[k] = v
				}
			}
		}
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if d.last != "replicar" {
		t.Fatalf("the last stage, docker build's default target, is %q; want replicar", d.last)
	}
	for _, want := range []string{"build", "nats-server", "replicar"} {
		if !slices.Contains(d.stages, want) {
			t.Errorf("no stage %q in %v", want, d.stages)
		}
	}
	b, _ := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if !strings.Contains(string(b), "./cmd/replicar") {
		t.Error("the Dockerfile does not build ./cmd/replicar")
	}
	checkConfig(t, "the image", d.env)
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "bin", ".run"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore does not leave out %s", want)
		}
	}
}

// checkConfig loads env as replicar would and fails on what it refuses.
// It returns the configuration.
func checkConfig(t *testing.T, who string, env map[string]string) proxy.Config {
	t.Helper()
	c := proxy.Default()
	for k, v := range env {
		name, ok := strings.CutPrefix(k, proxy.EnvPrefix)
		if !ok {
			continue
		}
		if err := c.Set(name, v); err != nil {
			t.Errorf("%s: %v", who, err)
		}
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("%s: replicar refuses its configuration:\n%v", who, err)
	}
	return c
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type composeFile struct {
	Services map[string]struct {
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		DependsOn   map[string]any    `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestCompose(t *testing.T) {
	dir := "compose"
	b, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	image := readDockerfile(t)
	var nodes []string
	groups, natsURLs, published := map[string]bool{}, map[string]bool{}, map[string]string{}
	for name, s := range cf.Services {
		for _, p := range s.Ports {
			host, _, _ := strings.Cut(p, ":")
			if other, dup := published[host]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, host)
			}
			published[host] = name
		}
		if s.Build != nil {
			ctx := filepath.Join(dir, s.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
			if !slices.Contains(image.stages, s.Build.Target) {
				t.Errorf("%s: build target %q is not a stage of the Dockerfile (%v)", name, s.Build.Target, image.stages)
			}
		}
		if _, ok := s.Environment["REPLICAR_BACKEND"]; !ok {
			continue
		}
		nodes = append(nodes, name)
		if s.Build == nil || s.Build.Target != "replicar" {
			t.Errorf("%s: not built from the Dockerfile's replicar target", name)
		}
		env := map[string]string{}
		for k, v := range image.env {
			env[k] = v
		}
		for k, v := range s.Environment {
			env[k] = v
		}
		c := checkConfig(t, name, env)
		if c.NodeID != name || c.Advertise != name {
			t.Errorf("%s: NODE_ID %q and ADVERTISE %q should be the service name peers resolve", name, c.NodeID, c.Advertise)
		}
		backend, _, _ := strings.Cut(c.Backend, ":")
		if _, ok := cf.Services[backend]; !ok {
			t.Errorf("%s: backend %s is not a service", name, c.Backend)
		}
		if _, ok := s.DependsOn[backend]; !ok {
			t.Errorf("%s: does not depend on its backend %s", name, backend)
		}
		natsHost := strings.TrimPrefix(c.NATSURL, "nats://")
		natsHost, _, _ = strings.Cut(natsHost, ":")
		if _, ok := cf.Services[natsHost]; !ok {
			t.Errorf("%s: NATS_URL %s names no service", name, c.NATSURL)
		}
		groups[c.Group], natsURLs[c.NATSURL] = true, true
		if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+strconv.Itoa(port(t, c.Listen))) }) {
			t.Errorf("%s: client port %s not published (%v)", name, c.Listen, s.Ports)
		}
	}
	slices.Sort(nodes)
	if !slices.Equal(nodes, []string{"n1", "n2", "n3"}) {
		t.Errorf("replicar services %v, want n1 n2 n3", nodes)
	}
	if len(groups) != 1 || len(natsURLs) != 1 {
		t.Errorf("the nodes do not share one group and one NATS: %v %v", groups, natsURLs)
	}
}

// k8sDoc is the part of a Kubernetes object the test reads.
type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		ServiceName              string `yaml:"serviceName"`
		Replicas                 int    `yaml:"replicas"`
		Template                 struct {
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func readK8s(t *testing.T) []k8sDoc {
	t.Helper()
	f, err := os.Open(filepath.Join("kubernetes", "replicar-redis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []k8sDoc
	dec := yaml.NewDecoder(f)
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("replicar-redis.yaml: %v", err)
		}
		if d.Kind == "" {
			t.Fatalf("a document without kind: %+v", d)
		}
		docs = append(docs, d)
	}
	return docs
}

func TestKubernetesSidecar(t *testing.T) {
	docs := readK8s(t)
	var sts *k8sDoc
	services := map[string]k8sDoc{}
	for i, d := range docs {
		switch d.Kind {
		case "StatefulSet":
			sts = &docs[i]
		case "Service":
			services[d.Metadata.Name] = d
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet")
	}
	if sts.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", sts.Spec.Replicas)
	}
	peers, ok := services[sts.Spec.ServiceName]
	if !ok || peers.Spec.ClusterIP != "None" || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("the StatefulSet's service %q must be headless and publish not-ready pods (a new leader is not ready while followers dial it): %+v",
			sts.Spec.ServiceName, peers.Spec)
	}
	var redis, sidecar *container
	for i, c := range sts.Spec.Template.Spec.Containers {
		switch c.Name {
		case "redis":
			redis = &sts.Spec.Template.Spec.Containers[i]
		case "replicar":
			sidecar = &sts.Spec.Template.Spec.Containers[i]
		}
	}
	if redis == nil || sidecar == nil {
		t.Fatal("want a redis and a replicar container in one pod")
	}

	// $(VAR) references as Kubernetes expands them, for one pod.
	pod := map[string]string{"POD_NAME": "replicar-redis-0", "POD_NAMESPACE": "default"}
	ref := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	env := map[string]string{}
	for k, v := range readDockerfile(t).env {
		env[k] = v
	}
	for _, e := range sidecar.Env {
		if e.ValueFrom != nil {
			continue // from the pod or a Secret
		}
		if _, known := proxy.LookupVar(strings.TrimPrefix(e.Name, proxy.EnvPrefix)); strings.HasPrefix(e.Name, proxy.EnvPrefix) && !known {
			t.Errorf("unknown variable %s", e.Name)
		}
		env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string { return pod[m[2:len(m)-1]] })
	}
	c := checkConfig(t, "the replicar sidecar", env)
	if !strings.Contains(c.Advertise, "."+sts.Spec.ServiceName+".") {
		t.Errorf("ADVERTISE %q is not a name under the headless service %s", c.Advertise, sts.Spec.ServiceName)
	}
	if c.NodeID != pod["POD_NAME"] {
		t.Errorf("NODE_ID %q, want the pod name", c.NodeID)
	}

	ports := map[string]int{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"client": c.Listen, "repl": c.ReplListen, "http": c.HTTPListen} {
		if ports[name] != port(t, addr) {
			t.Errorf("container port %s is %d, the sidecar listens on %s", name, ports[name], addr)
		}
	}
	for _, pr := range []struct {
		p    *probe
		path string
	}{{sidecar.LivenessProbe, "/healthz"}, {sidecar.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path || ports[pr.p.HTTPGet.Port] != port(t, c.HTTPListen) {
			t.Errorf("want an HTTP probe of %s on the http port", pr.path)
		}
	}

	// The store is reachable only from inside the pod, where the sidecar
	// finds it.
	args := strings.Join(redis.Args, " ")
	if !strings.Contains(args, "--bind 127.0.0.1") || !strings.Contains(args, "--port "+strconv.Itoa(port(t, c.Backend))) ||
		!strings.HasPrefix(c.Backend, "127.0.0.1:") {
		t.Errorf("redis args %q and BACKEND %s: want redis on localhost at the backend's port", args, c.Backend)
	}
}
