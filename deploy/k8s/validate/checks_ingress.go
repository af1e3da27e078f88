package validate

import (
	"errors"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The Ingress in front of relay: ingress-nginx with relay's own nginx settings.

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
