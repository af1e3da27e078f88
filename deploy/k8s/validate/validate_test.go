package validate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// dir is deploy/k8s, the kustomization under test.
const dir = ".."

var relayHelp = sync.OnceValues(func() (Relay, error) {
	// relay's own list of settings, from the binary: the truth. The repo
	// root is three levels up; make sure it is relay's module.
	root, err := filepath.Abs(filepath.Join(dir, "..", ".."))
	if err != nil {
		return Relay{}, err
	}
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.HasPrefix(mod, []byte("module github.com/relay/relay\n")) {
		return Relay{}, fmt.Errorf("%s is not relay's module root (%v)", root, err)
	}
	cmd := exec.Command("go", "run", "github.com/relay/relay/cmd/relay", "help")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Relay{}, fmt.Errorf("go run relay help: %v\n%s", err, stderr.Bytes())
	}
	return ParseHelp(string(out))
})

func relay(t *testing.T) Relay {
	t.Helper()
	r, err := relayHelp()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func load(t *testing.T) *Set {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestManifests(t *testing.T) {
	s := load(t)
	for _, err := range Check(s, relay(t)) {
		t.Error(err)
	}
	// Everything was decoded: one of each, two Services.
	if len(s.Deployments) != 1 || len(s.StatefulSets) != 1 || len(s.Services) != 2 || len(s.Ingresses) != 1 ||
		len(s.ConfigMaps) != 1 || len(s.Secrets) != 1 || len(s.PDBs) != 1 || len(s.HPAs) != 1 || len(s.Namespaces) != 1 {
		t.Errorf("decoded %d Deployments, %d StatefulSets, %d Services, %d Ingresses, %d ConfigMaps, %d Secrets, %d PDBs, %d HPAs, %d Namespaces",
			len(s.Deployments), len(s.StatefulSets), len(s.Services), len(s.Ingresses), len(s.ConfigMaps), len(s.Secrets), len(s.PDBs), len(s.HPAs), len(s.Namespaces))
	}
}

// Every manifest in deploy/k8s is applied: none was left out of the
// kustomization (and so out of this test).
func TestEveryFileListed(t *testing.T) {
	s := load(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name != "kustomization.yaml" && !slices.Contains(s.Kustomization.Resources, name) {
			t.Errorf("%s is not in kustomization.yaml's resources", name)
		}
	}
}

func TestParseHelp(t *testing.T) {
	r := relay(t)
	for name, def := range map[string]string{
		"RELAY_ADDR": ":3000", "RELAY_PING_INTERVAL": "30s", "RELAY_SHUTDOWN_TIMEOUT": "10s",
		"RELAY_MAX_MESSAGE_BYTES": "65536", "RELAY_NODE_ID": "host name", "RELAY_METRICS_ADDR": "(public port)",
	} {
		if got, ok := r.Defaults[name]; !ok || got != def {
			t.Errorf("relay help: %s default %q (listed %v), want %q", name, got, ok, def)
		}
	}
	if len(r.Defaults) < 25 {
		t.Errorf("relay help lists %d variables; the table has over 30", len(r.Defaults))
	}
}

// The strict decoding refuses what the API server would: the validator
// cannot pass by ignoring a field.
func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: relay
spec:
  replicas: 3
  selector:
    matchLabels: {app: relay}
  template:
    metadata:
      labels: {app: relay}
    spec:
      containers:
        - name: relay
          image: relay:local
          ports:
            - name: http
              containerPort: 3000
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
`
	if objs, err := Decode([]byte(deployment)); err != nil || len(objs) != 1 {
		t.Fatalf("the good Deployment: %d objects, %v", len(objs), err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", "          readinessProbe:", "          readinessProbes:", "readinessProbes"},
		{"misspelled nested field", "              path: /readyz", "              paht: /readyz", "paht"},
		{"string for an integer", "replicas: 3", `replicas: "three"`, "replicas"},
		{"name for a number", "containerPort: 3000", "containerPort: http", "containerPort"},
		{"wrong case", "  replicas: 3", "  Replicas: 3", "Replicas"},
		{"duplicate key", "  replicas: 3", "  replicas: 3\n  replicas: 4", "replicas"},
		{"field at the wrong level", "  replicas: 3", "  replicas: 3\n  image: relay:local", "image"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", "Deploymnet"},
		{"retired apiVersion", "apiVersion: apps/v1", "apiVersion: extensions/v1beta1", "extensions/v1beta1"},
		{"second document bad", "  replicas: 3", "  replicas: 3\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  portz: []", "portz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := strings.Replace(deployment, tc.old, tc.new, 1)
			if bad == deployment {
				t.Fatalf("%q is not in the manifest", tc.old)
			}
			_, err := Decode([]byte(bad))
			if err == nil {
				t.Fatalf("decoded without error:\n%s", bad)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			t.Logf("caught: %v", err)
		})
	}
}

// Load refuses a kustomization with a mistyped manifest, and a
// kustomization.yaml with a field it does not know.
func TestLoadRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"manifest", "relay-deployment.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSecond: 30", "terminationGracePeriodSecond"},
		{"kustomization", "kustomization.yaml", "images:", "imagez:", "imagez"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if filepath.Base(f) == tc.file {
					if !bytes.Contains(data, []byte(tc.old)) {
						t.Fatalf("%q is not in %s", tc.old, tc.file)
					}
					data = bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
				}
				if err := os.WriteFile(filepath.Join(tmp, filepath.Base(f)), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(tmp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error naming %q", err, tc.want)
			}
			t.Logf("caught: %v", err)
		})
	}
}

// Each check fails on the manifests with one thing broken: none passes
// vacuously.
func TestChecksCatch(t *testing.T) {
	r := relay(t)
	for _, tc := range []struct {
		name    string
		breakIt func(s *Set)
		want    string
	}{
		{"grace too short", func(s *Set) { *s.Deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds = 15 }, "terminationGracePeriodSeconds"},
		{"no preStop", func(s *Set) { relayContainer(s).Lifecycle = nil }, "preStop"},
		{"shutdown past grace", func(s *Set) { s.ConfigMaps[0].Data["RELAY_SHUTDOWN_TIMEOUT"] = "30s" }, "terminationGracePeriodSeconds"},
		{"readiness path", func(s *Set) { relayContainer(s).ReadinessProbe.HTTPGet.Path = "/healthz" }, "readinessProbe"},
		{"liveness on metrics", func(s *Set) { relayContainer(s).LivenessProbe.HTTPGet.Port = intstr.FromString("metrics") }, "livenessProbe"},
		{"probe by number", func(s *Set) { relayContainer(s).LivenessProbe.HTTPGet.Port = intstr.FromInt32(3000) }, "livenessProbe"},
		{"unknown setting", func(s *Set) { s.ConfigMaps[0].Data["RELAY_PING_INTERVALS"] = "30s" }, "RELAY_PING_INTERVALS"},
		{"unknown setting in the Secret", func(s *Set) { s.Secrets[0].StringData["RELAY_JWT_KEY"] = "x" }, "RELAY_JWT_KEY"},
		{"unknown setting in env", func(s *Set) {
			c := relayContainer(s)
			c.Env = append(c.Env, corev1.EnvVar{Name: "RELAY_REDIS", Value: "x"})
		}, "RELAY_REDIS"},
		{"missing ConfigMap", func(s *Set) { s.ConfigMaps[0].Name = "other" }, "relay-config"},
		{"service links", func(s *Set) { s.Deployments[0].Spec.Template.Spec.EnableServiceLinks = nil }, "enableServiceLinks"},
		{"metrics on the public port", func(s *Set) { s.ConfigMaps[0].Data["RELAY_METRICS_ADDR"] = "" }, "RELAY_METRICS_ADDR"},
		{"addr not the http port", func(s *Set) { s.ConfigMaps[0].Data["RELAY_ADDR"] = ":8080" }, "RELAY_ADDR"},
		{"ingress timeout under the ping interval", func(s *Set) {
			s.Ingresses[0].Annotations[ingressPrefix+"proxy-read-timeout"] = "20"
		}, "proxy-read-timeout"},
		{"ping interval past the ingress timeout", func(s *Set) { s.ConfigMaps[0].Data["RELAY_PING_INTERVAL"] = "2h" }, "proxy-send-timeout"},
		{"ingress timeout missing", func(s *Set) { delete(s.Ingresses[0].Annotations, ingressPrefix+"proxy-send-timeout") }, "proxy-send-timeout"},
		{"buffering", func(s *Set) { delete(s.Ingresses[0].Annotations, ingressPrefix+"proxy-buffering") }, "proxy-buffering"},
		{"body size", func(s *Set) { s.Ingresses[0].Annotations[ingressPrefix+"proxy-body-size"] = "64k" }, "proxy-body-size"},
		{"message size past the body size", func(s *Set) { s.ConfigMaps[0].Data["RELAY_MAX_MESSAGE_BYTES"] = "1048576" }, "proxy-body-size"},
		{"ingress to metrics", func(s *Set) { s.Ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name = "metrics" }, "/metrics must not be public"},
		{"writable root", func(s *Set) { *relayContainer(s).SecurityContext.ReadOnlyRootFilesystem = false }, "readOnlyRootFilesystem"},
		{"root allowed", func(s *Set) { s.Deployments[0].Spec.Template.Spec.SecurityContext.RunAsNonRoot = nil }, "runAsNonRoot"},
		{"escalation", func(s *Set) { relayContainer(s).SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation"},
		{"capabilities", func(s *Set) { relayContainer(s).SecurityContext.Capabilities = nil }, "capabilities"},
		{"no memory limit", func(s *Set) { delete(relayContainer(s).Resources.Limits, corev1.ResourceMemory) }, "memory limit"},
		{"no cpu request", func(s *Set) { delete(relayContainer(s).Resources.Requests, corev1.ResourceCPU) }, "cpu request"},
		{"connections past the memory limit", func(s *Set) { s.ConfigMaps[0].Data["RELAY_MAX_CONNECTIONS"] = "40000" }, "RELAY_MAX_CONNECTIONS"},
		{"no connection cap", func(s *Set) { delete(s.ConfigMaps[0].Data, "RELAY_MAX_CONNECTIONS") }, "RELAY_MAX_CONNECTIONS"},
		{"GOMEMLIMIT past the limit", func(s *Set) { relayContainer(s).Env[0].Value = "600MiB" }, "GOMEMLIMIT"},
		{"trusted proxies typo", func(s *Set) { s.ConfigMaps[0].Data["RELAY_TRUSTED_PROXIES"] = "10.0.0.0/33" }, "RELAY_TRUSTED_PROXIES"},
		{"bad duration", func(s *Set) { s.ConfigMaps[0].Data["RELAY_SHUTDOWN_TIMEOUT"] = "10" }, "RELAY_SHUTDOWN_TIMEOUT"},
		{"service selector", func(s *Set) { s.Services[0].Spec.Selector = map[string]string{"app": "relay"} }, "Service relay: selector"},
		{"pdb selector", func(s *Set) { s.PDBs[0].Spec.Selector.MatchLabels = map[string]string{"app": "relay"} }, "PodDisruptionBudget"},
		{"hpa target", func(s *Set) { s.HPAs[0].Spec.ScaleTargetRef.Name = "relays" }, "HorizontalPodAutoscaler"},
		{"redis url", func(s *Set) { s.ConfigMaps[0].Data["RELAY_REDIS_URL"] = "redis://redis-1.redis:6379" }, "RELAY_REDIS_URL"},
		{"no redis", func(s *Set) { delete(s.ConfigMaps[0].Data, "RELAY_REDIS_URL") }, "RELAY_REDIS_URL"},
		{"redis without aof", func(s *Set) { s.StatefulSets[0].Spec.Template.Spec.Containers[0].Args = []string{"redis-server"} }, "--appendonly"},
		{"redis volume", func(s *Set) { s.StatefulSets[0].Spec.Template.Spec.Containers[0].VolumeMounts = nil }, "volumeClaimTemplate"},
		{"redis service not headless", func(s *Set) { s.Services[1].Spec.ClusterIP = "" }, "headless"},
		{"image not in images", func(s *Set) { s.Kustomization.Images = nil }, "images"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := load(t)
			tc.breakIt(s)
			errs := Check(s, r)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					t.Logf("caught: %v", err)
					return
				}
			}
			t.Errorf("no error naming %q; got %v", tc.want, errs)
		})
	}
}

func relayContainer(s *Set) *corev1.Container {
	return &s.Deployments[0].Spec.Template.Spec.Containers[0]
}
