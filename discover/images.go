package discover

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// podSpecPaths are where each workload kind holds its Pod spec.
var podSpecPaths = map[string][]string{
	"Pod":                   {"spec"},
	"Deployment":            {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// containerLists are the Pod spec's lists of containers, each with an image.
var containerLists = []string{"initContainers", "containers", "ephemeralContainers"}

// imagesOf returns the images a workload object's Pod spec names, in order, once each.
func imagesOf(u *unstructured.Unstructured) []string {
	p, ok := podSpecPaths[u.GetKind()]
	if !ok {
		return nil
	}
	spec, found, _ := unstructured.NestedMap(u.Object, p...)
	if !found {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, list := range containerLists {
		cs, _, _ := unstructured.NestedSlice(spec, list)
		for _, c := range cs {
			m, _ := c.(map[string]any)
			img, _ := m["image"].(string)
			if img = strings.TrimSpace(img); img != "" && !seen[img] {
				seen[img] = true
				out = append(out, img)
			}
		}
	}
	return out
}

// imageRef is a container image reference split as a mirror spec's images: entry wants it.
type imageRef struct {
	// repo is the repository with its registry ("docker.io/library/redis").
	repo string
	// tag or digest; a reference with both keeps the digest, which is what the kubelet pulls.
	tag, digest string
}

func (r imageRef) String() string {
	if r.digest != "" {
		return r.repo + "@" + r.digest
	}
	return r.repo + ":" + r.tag
}

// parseImage reads a reference as the kubelet does: no registry is docker.io, a single
// path element on docker.io is under library/, no tag is latest.
func parseImage(s string) (imageRef, error) {
	if strings.Contains(s, "${") || strings.Contains(s, "{{") {
		return imageRef{}, fmt.Errorf("image %q holds an unresolved variable", s)
	}
	ref, err := name.ParseReference(s, name.WithDefaultRegistry("docker.io"))
	if err != nil {
		return imageRef{}, fmt.Errorf("image %q: %v", s, err)
	}
	repo := ref.Context()
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	out := imageRef{repo: reg + "/" + repo.RepositoryStr()}
	switch r := ref.(type) {
	case name.Digest:
		out.digest = r.DigestStr()
	case name.Tag:
		out.tag = r.TagStr()
	}
	// "repo:tag@sha256:…" parses as a digest; keep the digest only.
	return out, nil
}
