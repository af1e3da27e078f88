// Package validate checks relay's Kubernetes manifests (deploy/k8s) without
// a cluster: every document is decoded strictly into the Kubernetes API
// type its apiVersion and kind name, and Check then looks for what would
// break relay in a cluster that accepted the manifests.
//
// It is a module of its own so that the Kubernetes modules stay out of
// relay's go.mod.
package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Kustomization is the part of kustomize's kustomization.yaml that
// deploy/k8s uses. It is decoded as strictly as the manifests, so a field
// outside this list fails: add it here when the kustomization starts using
// it.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Labels     []Label  `json:"labels,omitempty"`
	Resources  []string `json:"resources"`
	Images     []Image  `json:"images,omitempty"`
}

// Label is one entry of a kustomization's labels.
type Label struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	IncludeTemplates bool              `json:"includeTemplates,omitempty"`
}

// Image is one entry of a kustomization's images: how an image name used
// in the manifests is rewritten.
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// Set is every object of a kustomization, by type, in file order.
type Set struct {
	Kustomization Kustomization
	Namespaces    []*corev1.Namespace
	ConfigMaps    []*corev1.ConfigMap
	Secrets       []*corev1.Secret
	Services      []*corev1.Service
	Deployments   []*appsv1.Deployment
	StatefulSets  []*appsv1.StatefulSet
	Ingresses     []*networkingv1.Ingress
	PDBs          []*policyv1.PodDisruptionBudget
	HPAs          []*autoscalingv2.HorizontalPodAutoscaler
}

// kinds maps apiVersion/kind to a new object of its API type: the kinds
// deploy/k8s uses, and only those, so a typo in either fails.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                    func() any { return new(appsv1.StatefulSet) },
	"networking.k8s.io/v1/Ingress":           func() any { return new(networkingv1.Ingress) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
}

// Load reads dir/kustomization.yaml and decodes every file it lists.
func Load(dir string) (*Set, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	s := &Set{}
	if err := decodeYAML(data, &s.Kustomization); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if k := s.Kustomization; k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("kustomization.yaml: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	if len(s.Kustomization.Resources) == 0 {
		return nil, fmt.Errorf("kustomization.yaml lists no resources")
	}
	for _, file := range s.Kustomization.Resources {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		objs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(objs) == 0 {
			return nil, fmt.Errorf("%s: no objects", file)
		}
		for _, o := range objs {
			s.add(o)
		}
	}
	return s, nil
}

func (s *Set) add(o any) {
	switch o := o.(type) {
	case *corev1.Namespace:
		s.Namespaces = append(s.Namespaces, o)
	case *corev1.ConfigMap:
		s.ConfigMaps = append(s.ConfigMaps, o)
	case *corev1.Secret:
		s.Secrets = append(s.Secrets, o)
	case *corev1.Service:
		s.Services = append(s.Services, o)
	case *appsv1.Deployment:
		s.Deployments = append(s.Deployments, o)
	case *appsv1.StatefulSet:
		s.StatefulSets = append(s.StatefulSets, o)
	case *networkingv1.Ingress:
		s.Ingresses = append(s.Ingresses, o)
	case *policyv1.PodDisruptionBudget:
		s.PDBs = append(s.PDBs, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		s.HPAs = append(s.HPAs, o)
	default:
		panic(fmt.Sprintf("validate: kinds has a type Set does not keep: %T", o))
	}
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Decode decodes every YAML document in data (separated by "---" lines)
// into the API type of its apiVersion and kind. Documents that are empty
// or only comments are skipped.
func Decode(data []byte) ([]any, error) {
	var objs []any
	for i, doc := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(doc)) // duplicate keys fail
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("document %d: unknown apiVersion %q kind %q", i+1, tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		if err := decodeJSON(js, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func decodeYAML(data []byte, into any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	return decodeJSON(js, into)
}

// decodeJSON decodes js into the struct into points to, refusing what the
// API server would refuse: a field the type does not have, a value of the
// wrong JSON type (encoding/json with DisallowUnknownFields), and a field
// spelled with the wrong case or given twice (sigs.k8s.io/json, the
// decoder the API server itself uses; encoding/json would accept
// "Replicas" for "replicas").
func decodeJSON(js []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	again := reflect.New(reflect.TypeOf(into).Elem()).Interface()
	strict, err := kjson.UnmarshalStrict(js, again)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return fmt.Errorf("%v", strict)
	}
	return nil
}
