// Package deploy holds Ferry's install manifests, a kustomize base (kustomization.yaml and the
// objects it lists), embedded so `sync install` renders them without the source tree.
package deploy

import (
	"embed"
	"regexp"
)

// Files is the base: kustomization.yaml and every manifest it lists, at the root.
//
//go:embed *.yaml
var Files embed.FS

// ImageName is the sync agent's image repository as the base names it, with the tag VERSION
// (ImagePlaceholder); `sync install` replaces both. Without --image it keeps the name and puts
// the build's version as the tag, the name hack/image gives the image it builds, so an image
// loaded into the nodes' container runtime under that name runs without a registry.
const (
	ImageName        = "ferry.local/ferry/sync"
	ImagePlaceholder = ImageName + ":VERSION"
)

// Names and paths of what `sync install` adds to the base, which the Deployment mounts.
const (
	ConfigMapName     = "ferry-sync-config"
	KeysConfigMapName = "ferry-sync-keys"
	ConfigFileName    = "config.yaml"
	KeysDir           = "/etc/ferry/keys"
	CacheMount        = "/var/lib/ferry"
)

var notTagChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// ImageTag makes an image tag of a build's version: v1.2.3 stays v1.2.3, a pseudo-version's
// "+dirty" becomes "-dirty", and the result is at most 128 characters starting with a letter,
// digit or underscore.
func ImageTag(version string) string {
	tag := notTagChars.ReplaceAllString(version, "-")
	if tag == "" || tag[0] == '.' || tag[0] == '-' {
		tag = "v" + tag
	}
	if len(tag) > 128 {
		tag = tag[:128]
	}
	return tag
}
