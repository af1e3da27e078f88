package validate

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Sizing from relay's measurements (README, Performance): an idle
// connection costs 11 KB alone on a node and up to 15 KB with a few
// thousand per replica. A relay pod's memory limit must hold
// RELAY_MAX_CONNECTIONS at the higher figure plus a base for the process.
const (
	bytesPerConnection = 15 << 10
	baseBytes          = 64 << 20
)

// Relay is what relay itself says about its settings: every RELAY_*
// variable and its default, as `relay help` prints them.
type Relay struct {
	Defaults map[string]string // name → default column (may be "(unset)" and the like)
}

var helpLine = regexp.MustCompile(`^\s+(RELAY_[A-Z0-9_]+)\s{2,}(.*?)\s{2,}`)

// ParseHelp reads the variable table of `relay help`'s output: lines of
// name, default and meaning in columns at least two spaces apart.
func ParseHelp(out string) (Relay, error) {
	r := Relay{Defaults: map[string]string{}}
	for line := range strings.Lines(out) {
		if m := helpLine.FindStringSubmatch(line); m != nil {
			r.Defaults[m[1]] = m[2]
		}
	}
	if len(r.Defaults) == 0 {
		return r, errors.New("no RELAY_* variables in relay help's output")
	}
	return r, nil
}

// Check returns every problem found in s, each naming the object.
func Check(s *Set, r Relay) []error {
	c := &checker{s: s, r: r}
	c.relay()
	c.ingress()
	c.pdb()
	c.hpa()
	c.redis()
	c.images()
	return c.errs
}

type checker struct {
	s    *Set
	r    Relay
	errs []error
	// From the relay Deployment, for the checks after it.
	dep  *appsv1.Deployment
	ctr  *corev1.Container
	vars map[string]string // the container's RELAY_* environment
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *checker) relay() {
	for _, d := range c.s.Deployments {
		if d.Name == "relay" {
			c.dep = d
		}
	}
	if c.dep == nil {
		c.fail("no Deployment named relay")
		return
	}
	d := c.dep
	spec := &d.Spec.Template.Spec
	for i := range spec.Containers {
		if spec.Containers[i].Name == "relay" {
			c.ctr = &spec.Containers[i]
		}
	}
	if c.ctr == nil {
		c.fail("Deployment relay: no container named relay")
		return
	}
	ctr := c.ctr
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		c.fail("Deployment relay: replicas must be set and at least 2 (one node is not a cluster)")
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		c.fail("Deployment relay: selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}

	c.vars = c.environment(spec, ctr)
	for name := range c.vars {
		if _, ok := c.r.Defaults[name]; !ok {
			c.fail("Deployment relay: %s is not one of relay's settings (relay help)", name)
		}
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		c.fail("Deployment relay: enableServiceLinks must be false, or the Service relay adds RELAY_PORT, RELAY_SERVICE_HOST and more to the environment")
	}

	// Ports: RELAY_ADDR is the port named http, RELAY_METRICS_ADDR another.
	httpPort := containerPort(ctr, "http")
	if httpPort == 0 {
		c.fail("container relay: no port named http")
	} else if p := addrPort(c.value("RELAY_ADDR")); p != httpPort {
		c.fail("container relay: RELAY_ADDR %q listens on %d, the port named http is %d", c.value("RELAY_ADDR"), p, httpPort)
	}
	if m := c.value("RELAY_METRICS_ADDR"); addrPort(m) == 0 {
		c.fail("container relay: RELAY_METRICS_ADDR must be set to a port of its own, so /metrics is not on the public port")
	} else if p := addrPort(m); p == httpPort || p != containerPort(ctr, "metrics") {
		c.fail("container relay: RELAY_METRICS_ADDR port %d must be the port named metrics (%d), apart from http", p, containerPort(ctr, "metrics"))
	}

	c.probe("readinessProbe", ctr.ReadinessProbe, "/readyz", httpPort)
	c.probe("livenessProbe", ctr.LivenessProbe, "/healthz", httpPort)

	// Termination: preStop pause + RELAY_SHUTDOWN_TIMEOUT < grace.
	pause := preStopPause(ctr)
	if pause <= 0 {
		c.fail("container relay: needs a preStop pause so endpoints drop the pod before SIGTERM")
	}
	shutdown, err := time.ParseDuration(c.value("RELAY_SHUTDOWN_TIMEOUT"))
	if err != nil {
		c.fail("container relay: RELAY_SHUTDOWN_TIMEOUT: %v", err)
	}
	grace := time.Duration(30) * time.Second // Kubernetes' default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= shutdown+pause {
		c.fail("Deployment relay: terminationGracePeriodSeconds %v must be longer than RELAY_SHUTDOWN_TIMEOUT %v + preStop %v", grace, shutdown, pause)
	}

	c.security("Deployment relay", spec, ctr, 65532)
	c.resources("container relay", ctr)
	c.memory()
	c.settings()

	// The Service in front: selects these pods, its ports are theirs.
	svc := c.service("relay")
	if svc == nil {
		c.fail("no Service named relay")
		return
	}
	if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		c.fail("Service relay: selector %v does not select the relay pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	for _, p := range svc.Spec.Ports {
		if targetPort(ctr, p.TargetPort) == 0 {
			c.fail("Service relay: port %s targets %s, which container relay does not have", p.Name, p.TargetPort.String())
		}
	}
}

// environment is the container's RELAY_* variables as Kubernetes sets
// them: envFrom in order, then env over them. Missing ConfigMaps and
// Secrets are reported.
func (c *checker) environment(spec *corev1.PodSpec, ctr *corev1.Container) map[string]string {
	vars := map[string]string{}
	set := func(name, value string) {
		if strings.HasPrefix(name, "RELAY_") {
			vars[name] = value
		}
	}
	for _, from := range ctr.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := c.configMap(from.ConfigMapRef.Name)
			if cm == nil {
				c.fail("container %s: envFrom ConfigMap %q is not in the kustomization", ctr.Name, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				set(from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			sec := c.secret(from.SecretRef.Name)
			if sec == nil {
				c.fail("container %s: envFrom Secret %q is not in the kustomization", ctr.Name, from.SecretRef.Name)
				continue
			}
			for k, v := range sec.Data {
				set(from.Prefix+k, string(v))
			}
			for k, v := range sec.StringData {
				set(from.Prefix+k, v)
			}
		}
	}
	for _, e := range ctr.Env {
		set(e.Name, e.Value) // valueFrom: the name is checked, the value is not known here
	}
	return vars
}

// value is the effective value of a relay setting: the environment's, or
// relay's default when it is unset or empty (as relay reads it).
func (c *checker) value(name string) string {
	if v := c.vars[name]; v != "" {
		return v
	}
	return c.r.Defaults[name]
}

// settings parses the values these manifests depend on the way relay would
// need them, so a typo fails here rather than at the pods' start.
func (c *checker) settings() {
	for _, name := range []string{"RELAY_PING_INTERVAL", "RELAY_PONG_TIMEOUT", "RELAY_SHUTDOWN_TIMEOUT"} {
		if d, err := time.ParseDuration(c.value(name)); err != nil || d <= 0 {
			c.fail("relay setting %s=%q: want a positive duration", name, c.value(name))
		}
	}
	for _, p := range strings.Split(c.vars["RELAY_TRUSTED_PROXIES"], ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				c.fail("relay setting RELAY_TRUSTED_PROXIES: %q is neither an IP nor a CIDR", p)
			}
		}
	}
	if c.vars["RELAY_TRUSTED_PROXIES"] == "" {
		c.fail("relay setting RELAY_TRUSTED_PROXIES is unset: relay would log ingress-nginx's address as every client's")
	}
	if _, err := strconv.Atoi(c.value("RELAY_MAX_MESSAGE_BYTES")); err != nil {
		c.fail("relay setting RELAY_MAX_MESSAGE_BYTES=%q: want an integer", c.value("RELAY_MAX_MESSAGE_BYTES"))
	}
}

func (c *checker) probe(kind string, p *corev1.Probe, path string, port int32) {
	switch {
	case p == nil:
		c.fail("container relay: no %s", kind)
	case p.HTTPGet == nil:
		c.fail("container relay: %s must be an httpGet of %s", kind, path)
	case p.HTTPGet.Path != path:
		c.fail("container relay: %s asks %q, want %q", kind, p.HTTPGet.Path, path)
	case p.HTTPGet.Port.Type != intstr.String:
		c.fail("container relay: %s port %s: use the port's name, http", kind, p.HTTPGet.Port.String())
	case p.HTTPGet.Port.StrVal != "http" || targetPort(c.ctr, p.HTTPGet.Port) != port:
		c.fail("container relay: %s port %q is not the container's port named http", kind, p.HTTPGet.Port.StrVal)
	}
}

// security: non-root as uid, no privilege escalation, a read-only root
// filesystem and no capabilities.
func (c *checker) security(what string, spec *corev1.PodSpec, ctr *corev1.Container, uid int64) {
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	sc := ctr.SecurityContext
	if sc == nil {
		c.fail("%s: container %s has no securityContext", what, ctr.Name)
		return
	}
	nonRoot := first(sc.RunAsNonRoot, pod.RunAsNonRoot)
	if nonRoot == nil || !*nonRoot {
		c.fail("%s: runAsNonRoot must be true", what)
	}
	if u := first(sc.RunAsUser, pod.RunAsUser); u == nil || *u != uid {
		c.fail("%s: runAsUser must be %d, the image's user", what, uid)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.fail("%s: readOnlyRootFilesystem must be true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.fail("%s: allowPrivilegeEscalation must be false", what)
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.fail("%s: must not be privileged", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.fail("%s: capabilities must drop ALL and add none", what)
	}
}

// resources: requests and limits for CPU and memory, requests ≤ limits.
func (c *checker) resources(what string, ctr *corev1.Container) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := ctr.Resources.Requests[name]
		lim, okLim := ctr.Resources.Limits[name]
		switch {
		case !okReq || req.IsZero():
			c.fail("%s: no %s request", what, name)
		case !okLim || lim.IsZero():
			c.fail("%s: no %s limit", what, name)
		case req.Cmp(lim) > 0:
			c.fail("%s: %s request %s above its limit %s", what, name, req.String(), lim.String())
		}
	}
}

// memory: the limit holds RELAY_MAX_CONNECTIONS, and GOMEMLIMIT is below it.
func (c *checker) memory() {
	lim, ok := c.ctr.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		return // reported by resources
	}
	maxConns, err := strconv.Atoi(c.value("RELAY_MAX_CONNECTIONS"))
	if err != nil || maxConns <= 0 {
		c.fail("relay setting RELAY_MAX_CONNECTIONS=%q: set a cap, or a pod takes connections past its memory limit and is OOM-killed with all of them", c.value("RELAY_MAX_CONNECTIONS"))
	} else if need := int64(maxConns)*bytesPerConnection + baseBytes; lim.Value() < need {
		c.fail("container relay: memory limit %s holds fewer than RELAY_MAX_CONNECTIONS=%d at %d KB each plus %d MiB (%d MiB)",
			lim.String(), maxConns, bytesPerConnection>>10, baseBytes>>20, need>>20)
	}
	for _, e := range c.ctr.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		q, err := goMemLimit(e.Value)
		if err != nil {
			c.fail("container relay: GOMEMLIMIT=%q: %v", e.Value, err)
		} else if q >= lim.Value() {
			c.fail("container relay: GOMEMLIMIT=%s must be below the memory limit %s", e.Value, lim.String())
		}
	}
}

// goMemLimit parses GOMEMLIMIT's syntax: bytes with an optional B, KiB,
// MiB, GiB or TiB suffix.
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("want bytes with an optional B, KiB, MiB, GiB or TiB suffix")
	}
	return n * mult, nil
}
