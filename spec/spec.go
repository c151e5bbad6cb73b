package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/opencontainers/go-digest"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/internal/strictyaml"
)

// APIVersion and Kind identify a mirror spec.
const (
	APIVersion = "ferry.dev/v1alpha1"
	Kind       = "Mirror"
)

// DefaultExpiry is a bundle's lifetime when the spec does not set one.
const DefaultExpiry = 30 * 24 * time.Hour

// DefaultTimeout is how long one source may take to fetch when the spec does not say.
const DefaultTimeout = 15 * time.Minute

// Spec is a parsed, valid mirror spec.
type Spec struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Bundle     BundleConfig `json:"bundle,omitempty"`
	Git        []Git        `json:"git,omitempty"`
	Charts     []Chart      `json:"charts,omitempty"`
	Images     []Image      `json:"images,omitempty"`
	// Cluster names a folder of Kubernetes manifests the bundle carries as its cluster item,
	// applied by sync before anything else.
	Cluster *Cluster `json:"cluster,omitempty"`
	// Flux lists Flux entry points: mirror pack builds each as Flux would and carries every
	// source, chart and image it reaches, beside what git:, charts: and images: list.
	Flux []Flux `json:"flux,omitempty"`
	// Upstreams send the connected side's requests to the mirrors a site reaches; the bundle
	// records the original identities.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	// Dir is the folder of the spec file: relative paths (cluster.path) are resolved from it.
	// Parse sets it from the source it is given.
	Dir string `json:"-"`
}

// Cluster is the cluster objects a bundle carries (its desired state, signed with it).
type Cluster struct {
	// Path is a folder of YAML manifests (*.yaml, *.yml, recursively), relative to the spec file.
	Path string `json:"path"`
}

// BundleConfig holds settings of the bundle as a whole.
type BundleConfig struct {
	// Expires is the bundle's lifetime from its creation (a Go duration, "720h"). Default 30 days.
	Expires Duration `json:"expires,omitempty"`
}

// Git is a Git repository to carry.
type Git struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Ref  GitRef `json:"ref"`
	// Paths limits the tree published as an OCI artifact to these folders (default: all).
	Paths []string `json:"paths,omitempty"`
	// Timeout bounds the whole fetch of the source (default DefaultTimeout).
	Timeout Duration `json:"timeout,omitempty"`
}

// Deadline returns how long the source may take to fetch.
func (g Git) Deadline() time.Duration { return deadline(g.Timeout) }

// GitRef says which commit to carry: exactly one field is set.
type GitRef = bundle.GitRef

// Chart is a Helm chart to carry.
type Chart struct {
	Name string `json:"name"`
	// Repository is an HTTP(S) chart repository URL or an oci:// registry path.
	Repository string `json:"repository"`
	// Chart is the chart's name in the repository (default: Name).
	Chart string `json:"chart,omitempty"`
	// Version is an exact version or a semver range; the highest match is carried.
	Version string `json:"version"`
	// AllowedHosts lists the hosts (host or host:port) other than the repository's own that an
	// HTTP repository's index.yaml may send chart downloads to. Default: none.
	AllowedHosts []string `json:"allowedHosts,omitempty"`
	// Timeout bounds the whole fetch of the source (default DefaultTimeout).
	Timeout Duration `json:"timeout,omitempty"`
}

// Deadline returns how long the source may take to fetch.
func (c Chart) Deadline() time.Duration { return deadline(c.Timeout) }

// Image is a container image to carry.
type Image struct {
	Name string `json:"name"`
	// Image is the repository, without tag or digest ("ghcr.io/org/app").
	Image string `json:"image"`
	// Exactly one of Tag, Digest and SemVer.
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
	// SemVer picks the highest tag matching the range.
	SemVer string `json:"semver,omitempty"`
	// Platforms keeps only these platforms of a multi-platform image ("linux/amd64"); the
	// index itself is kept byte for byte. Default: every platform.
	Platforms []string `json:"platforms,omitempty"`
	// Signatures carries the image's signatures, attestations and SBOMs (default true).
	Signatures *bool `json:"signatures,omitempty"`
	// Timeout bounds the whole fetch of the source (default DefaultTimeout).
	Timeout Duration `json:"timeout,omitempty"`
}

// Deadline returns how long the source may take to fetch.
func (i Image) Deadline() time.Duration { return deadline(i.Timeout) }

func deadline(d Duration) time.Duration {
	if d.Duration <= 0 {
		return DefaultTimeout
	}
	return d.Duration
}

// WantSignatures reports whether the image's signatures are to be carried.
func (i Image) WantSignatures() bool { return i.Signatures == nil || *i.Signatures }

// ChartName returns the chart's name in its repository.
func (c Chart) ChartName() string {
	if c.Chart != "" {
		return c.Chart
	}
	return c.Name
}

// IsOCI reports whether the chart comes from an OCI registry.
func (c Chart) IsOCI() bool { return strings.HasPrefix(c.Repository, "oci://") }

// Duration is a time.Duration written as a Go duration string.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "720h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"720h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"720h\"", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Error lists every problem of a spec, each naming its field.
type Error struct {
	Source   string
	Problems []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("spec %s: %d problem(s):\n  %s", e.Source, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Load reads and parses the spec file at path.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates a spec. source is the spec file's path: it names the spec in
// errors, and relative paths in the spec (cluster.path) are resolved from its folder.
func Parse(source string, data []byte) (*Spec, error) {
	raw, jsonData, err := strictyaml.Decode(data)
	if err != nil {
		return nil, &Error{Source: source, Problems: []string{"not valid YAML: " + err.Error()}}
	}
	problems := strictyaml.Checker{Leaf: durationLeaf}.Check(raw, reflect.TypeFor[Spec]())
	var s Spec
	if err := json.NewDecoder(bytes.NewReader(jsonData)).Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			problems = append(problems, fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value))
		} else {
			problems = append(problems, err.Error())
		}
		return nil, &Error{Source: source, Problems: problems}
	}
	s.Dir = filepath.Dir(source)
	problems = append(problems, s.validate()...)
	if s.Cluster != nil && s.Cluster.Path != "" {
		_, cp := s.readCluster()
		problems = append(problems, cp...)
	}
	if len(problems) > 0 {
		return nil, &Error{Source: source, Problems: problems}
	}
	if s.Bundle.Expires.Duration == 0 {
		s.Bundle.Expires.Duration = DefaultExpiry
	}
	return &s, nil
}

// durationLeaf leaves a Duration to its decoder, which reports what is wrong with it.
func durationLeaf(_ string, _ any, t reflect.Type) (string, bool) {
	return "", t == reflect.TypeFor[Duration]()
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)

func (s *Spec) validate() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if s.APIVersion != APIVersion {
		add("apiVersion: %q, want %s", s.APIVersion, APIVersion)
	}
	if s.Kind != Kind {
		add("kind: %q, want %s", s.Kind, Kind)
	}
	if s.Bundle.Expires.Duration < 0 {
		add("bundle.expires: %s is negative", s.Bundle.Expires)
	}
	if len(s.Git)+len(s.Charts)+len(s.Images) == 0 && s.Cluster == nil {
		add("git, charts, images, cluster: the spec lists nothing to carry")
	}
	s.validateFlux(add)
	if s.Cluster != nil && s.Cluster.Path == "" {
		add("cluster.path: required (a folder of YAML manifests, relative to the spec file)")
	}
	names := map[string]string{}
	name := func(field, n string) {
		switch {
		case n == "":
			add("%s.name: required", field)
		case len(n) > 128 || !nameRE.MatchString(n) || n == "bundle" || n == bundle.ClusterItemName || strings.HasPrefix(n, "sha256-"):
			add("%s.name: %q: use lowercase letters, digits and . _ - (at most 128 characters; not \"bundle\", \"cluster\" or sha256-…)", field, n)
		case names[n] != "":
			add("%s.name: %q is already the name of %s", field, n, names[n])
		default:
			names[n] = field
		}
	}
	oneOf := func(field string, set map[string]string) {
		var given []string
		for k, v := range set {
			if v != "" {
				given = append(given, k)
			}
		}
		sort.Strings(given)
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(given) != 1 {
			add("%s: set exactly one of %s (set: %s)", field, strings.Join(keys, ", "), orNone(given))
		}
	}
	rangeOK := func(field, r string) {
		if r == "" {
			return
		}
		if _, err := semver.NewConstraint(r); err != nil {
			add("%s: %q is not a semver range: %v", field, r, err)
		}
	}
	timeout := func(field string, d Duration) {
		if d.Duration < 0 {
			add("%s.timeout: %s is negative", field, d)
		}
	}
	for i, g := range s.Git {
		f := fmt.Sprintf("git[%d]", i)
		name(f, g.Name)
		if !strings.HasPrefix(g.URL, "https://") && !strings.HasPrefix(g.URL, "http://") && !strings.HasPrefix(g.URL, "ssh://") && !strings.HasPrefix(g.URL, "file://") {
			add("%s.url: %q: want an https://, http://, ssh:// or file:// URL", f, g.URL)
		}
		oneOf(f+".ref", map[string]string{"branch": g.Ref.Branch, "tag": g.Ref.Tag, "semver": g.Ref.SemVer, "commit": g.Ref.Commit})
		rangeOK(f+".ref.semver", g.Ref.SemVer)
		if c := g.Ref.Commit; c != "" && !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(c) {
			add("%s.ref.commit: %q is not a full 40-character commit hash", f, c)
		}
		timeout(f, g.Timeout)
		for j, path := range g.Paths {
			if path == "" || strings.HasPrefix(path, "/") || strings.Contains("/"+path+"/", "/../") {
				add("%s.paths[%d]: %q must be a relative path inside the repository", f, j, path)
			}
		}
	}
	for i, c := range s.Charts {
		f := fmt.Sprintf("charts[%d]", i)
		name(f, c.Name)
		if !c.IsOCI() && !strings.HasPrefix(c.Repository, "https://") && !strings.HasPrefix(c.Repository, "http://") {
			add("%s.repository: %q: want an https:// chart repository or an oci:// registry path", f, c.Repository)
		}
		if c.Version == "" {
			add("%s.version: required (a version or a semver range)", f)
		}
		rangeOK(f+".version", c.Version)
		timeout(f, c.Timeout)
		for j, h := range c.AllowedHosts {
			if h == "" || strings.ContainsAny(h, "/@?# ") {
				add("%s.allowedHosts[%d]: %q: want a host name or host:port, without scheme or path", f, j, h)
			}
		}
		if len(c.AllowedHosts) > 0 && c.IsOCI() {
			add("%s.allowedHosts: only an HTTP(S) chart repository sends downloads elsewhere; remove it for an oci:// repository", f)
		}
	}
	for i, im := range s.Images {
		f := fmt.Sprintf("images[%d]", i)
		name(f, im.Name)
		if im.Image == "" || strings.ContainsAny(im.Image, "@ ") || strings.Contains(im.Image[strings.LastIndex(im.Image, "/")+1:], ":") {
			add("%s.image: %q: want a repository without tag or digest (put those in tag, digest or semver)", f, im.Image)
		}
		oneOf(f, map[string]string{"tag": im.Tag, "digest": im.Digest, "semver": im.SemVer})
		rangeOK(f+".semver", im.SemVer)
		timeout(f, im.Timeout)
		if im.Digest != "" {
			if _, err := digest.Parse(im.Digest); err != nil {
				add("%s.digest: %q is not a digest: %v", f, im.Digest, err)
			}
		}
		for j, pl := range im.Platforms {
			if parts := strings.Split(pl, "/"); len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
				add("%s.platforms[%d]: %q: want os/arch or os/arch/variant", f, j, pl)
			}
		}
	}
	return p
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
