package validate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
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

const ingressPrefix = "nginx.ingress.kubernetes.io/"

// ingress: ingress-nginx, to the relay Service's http port, with timeouts
// past the ping interval, no buffering, and bodies relay accepts.
func (c *checker) ingress() {
	if len(c.s.Ingresses) != 1 {
		c.fail("want one Ingress, have %d", len(c.s.Ingresses))
		return
	}
	ing := c.s.Ingresses[0]
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
		c.fail("Ingress %s: ingressClassName must be nginx: the annotations are ingress-nginx's", ing.Name)
	}
	backends := 0
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			backends++
			b := p.Backend.Service
			if b == nil {
				c.fail("Ingress %s: path %s has no service backend", ing.Name, p.Path)
				continue
			}
			svc := c.service(b.Name)
			if svc == nil {
				c.fail("Ingress %s: backend Service %q is not in the kustomization", ing.Name, b.Name)
				continue
			}
			var sp *corev1.ServicePort
			for i := range svc.Spec.Ports {
				if q := &svc.Spec.Ports[i]; (b.Port.Name != "" && q.Name == b.Port.Name) || (b.Port.Name == "" && q.Port == b.Port.Number) {
					sp = q
				}
			}
			if sp == nil {
				c.fail("Ingress %s: Service %s has no port %s%d", ing.Name, b.Name, b.Port.Name, b.Port.Number)
				continue
			}
			if c.ctr != nil && b.Name == "relay" && targetPort(c.ctr, sp.TargetPort) != containerPort(c.ctr, "http") {
				c.fail("Ingress %s: routes to Service port %s, which is not relay's http port (/metrics must not be public)", ing.Name, sp.Name)
			}
		}
	}
	if backends == 0 {
		c.fail("Ingress %s: no paths", ing.Name)
	}

	a := ing.Annotations
	ping, _ := time.ParseDuration(c.value("RELAY_PING_INTERVAL"))
	for _, name := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
		v, ok := a[ingressPrefix+name]
		secs, err := strconv.Atoi(v)
		switch {
		case !ok:
			c.fail("Ingress %s: no %s%s (ingress-nginx's default, 60 s, drops idle WebSockets)", ing.Name, ingressPrefix, name)
		case err != nil:
			c.fail("Ingress %s: %s=%q: want whole seconds", ing.Name, name, v)
		case time.Duration(secs)*time.Second < ping:
			c.fail("Ingress %s: %s %ds is shorter than RELAY_PING_INTERVAL %v: idle WebSockets would be cut", ing.Name, name, secs, ping)
		}
	}
	if v := a[ingressPrefix+"proxy-buffering"]; v != "off" {
		c.fail("Ingress %s: proxy-buffering %q, want \"off\": frames must stream", ing.Name, v)
	}
	maxMsg, _ := strconv.ParseInt(c.value("RELAY_MAX_MESSAGE_BYTES"), 10, 64)
	need := maxMsg*6 + 4096 // what relay's /api/notify accepts (internal/server/api.go)
	if v, ok := a[ingressPrefix+"proxy-body-size"]; !ok {
		c.fail("Ingress %s: no proxy-body-size (ingress-nginx's default is 1m; say it, it is sized from RELAY_MAX_MESSAGE_BYTES)", ing.Name)
	} else if n, err := nginxSize(v); err != nil {
		c.fail("Ingress %s: proxy-body-size %q: %v", ing.Name, v, err)
	} else if n < need {
		c.fail("Ingress %s: proxy-body-size %s is below the %d bytes relay accepts for RELAY_MAX_MESSAGE_BYTES=%d", ing.Name, v, need, maxMsg)
	}
}

// nginxSize parses an nginx size: bytes, or with k, m or g.
func nginxSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("want bytes, or a number with k, m or g")
	}
	return n * mult, nil
}

func (c *checker) pdb() {
	if c.dep == nil {
		return
	}
	found := false
	for _, p := range c.s.PDBs {
		if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, c.dep.Spec.Template.Labels) {
			continue
		}
		found = true
		replicas := int(*c.dep.Spec.Replicas)
		if v := p.Spec.MaxUnavailable; v != nil && (v.Type != intstr.Int || v.IntValue() < 1 || v.IntValue() >= replicas) {
			c.fail("PodDisruptionBudget %s: maxUnavailable %s must be a count from 1 to replicas-1", p.Name, v.String())
		}
		if v := p.Spec.MinAvailable; v != nil && (v.Type != intstr.Int || v.IntValue() >= replicas) {
			c.fail("PodDisruptionBudget %s: minAvailable %s would block every drain", p.Name, v.String())
		}
	}
	if !found {
		c.fail("no PodDisruptionBudget selects the relay pods")
	}
}

func (c *checker) hpa() {
	if c.dep == nil {
		return
	}
	found := false
	for _, h := range c.s.HPAs {
		t := h.Spec.ScaleTargetRef
		if t.Kind != "Deployment" || t.Name != c.dep.Name || t.APIVersion != "apps/v1" {
			c.fail("HorizontalPodAutoscaler %s: targets %s %s %s, not the relay Deployment", h.Name, t.APIVersion, t.Kind, t.Name)
			continue
		}
		found = true
		replicas := *c.dep.Spec.Replicas
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > replicas || replicas > h.Spec.MaxReplicas {
			c.fail("HorizontalPodAutoscaler %s: the Deployment's %d replicas must lie within minReplicas..maxReplicas", h.Name, replicas)
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			if m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.AverageUtilization != nil {
				cpu = true
			}
		}
		if !cpu {
			c.fail("HorizontalPodAutoscaler %s: no CPU utilization metric", h.Name)
		}
		if _, ok := c.ctr.Resources.Requests[corev1.ResourceCPU]; cpu && !ok {
			c.fail("HorizontalPodAutoscaler %s: CPU utilization needs a CPU request on container relay", h.Name)
		}
	}
	if !found {
		c.fail("no HorizontalPodAutoscaler for the relay Deployment")
	}
}

// redis: when the kustomization runs Redis itself, it is a StatefulSet with
// append-only persistence on a volume, behind a headless Service, and
// RELAY_REDIS_URL points at it.
func (c *checker) redis() {
	u, err := url.Parse(c.value("RELAY_REDIS_URL"))
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		c.fail("relay setting RELAY_REDIS_URL=%q: want redis:// or rediss://: three nodes need a shared broker", c.value("RELAY_REDIS_URL"))
		return
	}
	if len(c.s.StatefulSets) == 0 {
		return // a managed Redis
	}
	if len(c.s.StatefulSets) != 1 {
		c.fail("want one StatefulSet (Redis), have %d", len(c.s.StatefulSets))
		return
	}
	st := c.s.StatefulSets[0]
	svc := c.service(st.Spec.ServiceName)
	switch {
	case svc == nil:
		c.fail("StatefulSet %s: serviceName %q is not a Service in the kustomization", st.Name, st.Spec.ServiceName)
	case svc.Spec.ClusterIP != corev1.ClusterIPNone:
		c.fail("StatefulSet %s: Service %s must be headless (clusterIP: None)", st.Name, svc.Name)
	case !selects(svc.Spec.Selector, st.Spec.Template.Labels):
		c.fail("StatefulSet %s: Service %s does not select its pods", st.Name, svc.Name)
	}
	if st.Spec.Replicas == nil || *st.Spec.Replicas != 1 {
		c.fail("StatefulSet %s: replicas must be 1: more would be separate, unconnected Redis servers", st.Name)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "6379"
	}
	if want := []string{st.Name + "-0." + st.Spec.ServiceName, st.Spec.ServiceName}; !slices.Contains(want, host) {
		c.fail("relay setting RELAY_REDIS_URL host %q: want %s", host, strings.Join(want, " or "))
	}
	spec := &st.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		c.fail("StatefulSet %s: want one container", st.Name)
		return
	}
	ctr := &spec.Containers[0]
	if p, _ := strconv.Atoi(port); containerPort(ctr, "redis") != int32(p) {
		c.fail("StatefulSet %s: RELAY_REDIS_URL port %s is not the container's port named redis", st.Name, port)
	}
	args := strings.Join(append(slices.Clone(ctr.Command), ctr.Args...), " ")
	if !strings.Contains(args, "--appendonly yes") {
		c.fail("StatefulSet %s: redis-server needs --appendonly yes", st.Name)
	}
	dir := "/data" // the redis image's working directory
	if i := strings.Index(args, "--dir "); i >= 0 {
		dir = strings.Fields(args[i+len("--dir "):])[0]
	}
	persisted := false
	for _, m := range ctr.VolumeMounts {
		for _, t := range st.Spec.VolumeClaimTemplates {
			if m.Name == t.Name && m.MountPath == dir {
				persisted = true
			}
		}
	}
	if !persisted {
		c.fail("StatefulSet %s: %s (the append-only file's directory) is not on a volumeClaimTemplate", st.Name, dir)
	}
	c.security("StatefulSet "+st.Name, spec, ctr, 999)
	c.resources("StatefulSet "+st.Name, ctr)
	if ctr.ReadinessProbe == nil || ctr.LivenessProbe == nil {
		c.fail("StatefulSet %s: needs readiness and liveness probes", st.Name)
	}
}

// images: the kustomization rewrites the relay image, so users can point
// it at their registry without editing the Deployment.
func (c *checker) images() {
	if c.ctr == nil {
		return
	}
	name, _, _ := strings.Cut(c.ctr.Image, ":")
	for _, img := range c.s.Kustomization.Images {
		if img.Name == name {
			return
		}
	}
	c.fail("kustomization.yaml: images has no entry for %q, the relay container's image", name)
}

func (c *checker) service(name string) *corev1.Service {
	for _, s := range c.s.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (c *checker) configMap(name string) *corev1.ConfigMap {
	for _, m := range c.s.ConfigMaps {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func (c *checker) secret(name string) *corev1.Secret {
	for _, s := range c.s.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func containerPort(ctr *corev1.Container, name string) int32 {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// targetPort resolves a port by name or number to one of ctr's ports, or 0.
func targetPort(ctr *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.String {
		return containerPort(ctr, p.StrVal)
	}
	for _, q := range ctr.Ports {
		if q.ContainerPort == p.IntVal {
			return q.ContainerPort
		}
	}
	return 0
}

// addrPort is the port of a host:port listen address, or 0.
func addrPort(addr string) int32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0
	}
	return int32(n)
}

// preStopPause is how long the container's preStop hook waits: the sleep
// action, or an exec of sleep N.
func preStopPause(ctr *corev1.Container) time.Duration {
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil {
		return 0
	}
	h := ctr.Lifecycle.PreStop
	if h.Sleep != nil {
		return time.Duration(h.Sleep.Seconds) * time.Second
	}
	if h.Exec != nil && len(h.Exec.Command) == 2 && strings.HasSuffix(h.Exec.Command[0], "sleep") {
		if n, err := strconv.Atoi(h.Exec.Command[1]); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

func first[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}
