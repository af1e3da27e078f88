package validate

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// What surrounds the relay Deployment: its disruption budget, its
// autoscaler, the Redis it shares and the image it runs.

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
