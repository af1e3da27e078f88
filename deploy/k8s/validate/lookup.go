package validate

import (
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Look-ups shared by the checks.

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
