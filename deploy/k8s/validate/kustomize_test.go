package validate

import (
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// What `kubectl apply -k deploy/k8s` sends: kustomize's own build of the
// directory, decoded as strictly and passing the same checks, with every
// object in the namespace and the relay image as the images entry says.
func TestKustomizeBuild(t *testing.T) {
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatalf("kustomize's output: %v", err)
	}
	s := &Set{Kustomization: load(t).Kustomization}
	for _, o := range objs {
		s.add(o)
	}
	for _, err := range Check(s, relay(t)) {
		t.Error(err)
	}
	for _, r := range resources.Resources() {
		if r.GetKind() != "Namespace" && r.GetNamespace() != "relay" {
			t.Errorf("%s %s: namespace %q, want relay", r.GetKind(), r.GetName(), r.GetNamespace())
		}
		if r.GetLabels()["app.kubernetes.io/part-of"] != "relay" {
			t.Errorf("%s %s: no part-of label", r.GetKind(), r.GetName())
		}
	}
	if !strings.Contains(string(out), "image: relay:local\n") {
		t.Errorf("the relay image is not relay:local in kustomize's output")
	}
}
