package verify

import (
	"fmt"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/ferry-gitops/ferry/bundle"
)

// The labels that make an image the Ferry agent's (hack/image writes them into every
// platform's image config and as the manifest's or index's annotations). They are inside the
// signed graph, so they are as trusted as the bundle that carries them.
const (
	LabelTitle   = "org.opencontainers.image.title"
	LabelVersion = "org.opencontainers.image.version"
	// AgentTitle is the title of the agent's image.
	AgentTitle = "ferry sync"
)

// ImageLabels is one set of labels (or annotations) of an image item: a platform's image config,
// or a manifest's or index's annotations. Where names it in an error ("config sha256:… of
// linux/arm64").
type ImageLabels struct {
	Where  string
	Labels map[string]string
	// Config is set for an image config's labels (the runtime runs what a config describes),
	// unset for a manifest's or index's annotations.
	Config bool
}

// AgentImage is an image item of a bundle with the labels its configs and manifests carry.
type AgentImage struct {
	Item   string
	Labels []ImageLabels
}

// AgentVersions decides the agent images of an accepted bundle against the highest agent version
// the cache recorded (recorded, "" when none) and the policy's AgentFloor (the running agent's
// own version; ignored unless it is valid semver). An image is the agent's when any of its label
// sets has the title AgentTitle; then every platform's config must carry that title and a valid
// semver version, annotations that carry a title or version must agree, and all versions must be
// the same. A bundle whose agent image is older than the recorded
// version or the floor is refused (bundle.CheckAgentRollback); equal versions pass. It returns the
// version to record: the highest of recorded and the bundle's agent images.
func (r *Run) AgentVersions(images []AgentImage, recorded string) (string, error) {
	seq, root := uint64(0), r.root.Digest
	if r.bundle != nil {
		seq = r.bundle.Sequence
	}
	reject := func(item, detail, fix string) error {
		return rejected(seq, root, bundle.Reject(item, "", bundle.CheckAgentRollback, fix, "%s", detail))
	}
	if !r.decidedOK {
		return "", reject(bundle.ItemRoot, "the root was never checked", "")
	}
	highest := recorded
	if highest != "" && !semver.IsValid(highest) {
		return "", fmt.Errorf("cache state: recorded agent version %q is not semver; restore state.json from a backup or remove its agentVersion field", recorded)
	}
	floor, floorFrom := highest, "the highest agent version the cache accepted"
	if f := r.policy.AgentFloor; semver.IsValid(f) && (floor == "" || semver.Compare(f, floor) > 0) {
		floor, floorFrom = f, "the running agent's version"
	}
	for _, img := range images {
		version, agent, err := agentVersion(img)
		if err != nil {
			return "", reject(img.Item, err.Error(), "pack the agent image built by hack/image, whose every config and manifest carry the same "+LabelVersion+" (a semver such as v1.2.3)")
		}
		if !agent {
			continue
		}
		if floor != "" && semver.Compare(version, floor) < 0 {
			return "", reject(img.Item, fmt.Sprintf("agent image version %s < %s, %s (anti-rollback of the agent)", version, floor, floorFrom),
				fmt.Sprintf("pack a bundle with agent image >= %s", floor))
		}
		if highest == "" || semver.Compare(version, highest) > 0 {
			highest = version
		}
	}
	return highest, nil
}

// agentVersion says whether img is the agent's image and, if it is, its version.
func agentVersion(img AgentImage) (string, bool, error) {
	agent := false
	for _, l := range img.Labels {
		if l.Labels[LabelTitle] == AgentTitle {
			agent = true
		}
	}
	if !agent {
		return "", false, nil
	}
	version, from := "", ""
	for _, l := range img.Labels {
		title, titled := l.Labels[LabelTitle]
		v, versioned := l.Labels[LabelVersion]
		switch {
		case titled && title != AgentTitle:
			return "", true, fmt.Errorf("an agent image (title %q) whose %s has title %q", AgentTitle, l.Where, title)
		case !titled && l.Config:
			return "", true, fmt.Errorf("an agent image (title %q elsewhere) whose %s has no %s label", AgentTitle, l.Where, LabelTitle)
		case !versioned && !l.Config:
			continue // annotations need not repeat the version; the configs carry it
		case !versioned:
			return "", true, fmt.Errorf("agent image: %s has no %s label", l.Where, LabelVersion)
		case !semver.IsValid(v):
			return "", true, fmt.Errorf("agent image: %s has %s %q, not a semver version (vMAJOR.MINOR.PATCH)", l.Where, LabelVersion, v)
		case version == "":
			version, from = v, l.Where
		case semver.Compare(v, version) != 0:
			return "", true, fmt.Errorf("agent image: %s has version %s but %s has %s; its parts disagree", l.Where, v, from, version)
		}
	}
	if version == "" {
		return "", true, fmt.Errorf("agent image: no config carries %s (%s)", LabelVersion, whereList(img.Labels))
	}
	return version, true, nil
}

func whereList(ls []ImageLabels) string {
	var w []string
	for _, l := range ls {
		w = append(w, l.Where)
	}
	return strings.Join(w, ", ")
}
