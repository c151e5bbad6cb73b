package spec

import (
	"fmt"
	"net/url"
	"strings"
)

// Flux is a Flux entry point: a folder of a carried Git repository that Flux's bootstrap would
// point its root Kustomization at (clusters/production). mirror pack builds it as Flux would
// and carries every source, chart and image the objects it reaches need (docs/flux.md,
// "Discovery").
type Flux struct {
	// Git names the item of git: that holds the folder.
	Git string `json:"git"`
	// Path is the folder inside that repository, as a Kustomization's spec.path.
	Path string `json:"path"`
	// Name and Namespace are those of the root GitRepository and Kustomization the bundle's
	// cluster item carries, as flux bootstrap's gotk-sync.yaml names them (default
	// flux-system, flux-system).
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// RootName returns the root objects' name.
func (f Flux) RootName() string {
	if f.Name == "" {
		return "flux-system"
	}
	return f.Name
}

// RootNamespace returns the root objects' namespace.
func (f Flux) RootNamespace() string {
	if f.Namespace == "" {
		return "flux-system"
	}
	return f.Namespace
}

// Upstream sends the connected side's requests for an upstream to the mirror the site reaches
// instead (Artifactory, Harbor, Nexus, a local registry). What the bundle records, and what
// sync serves and matches Flux's objects against, is the original identity.
type Upstream struct {
	// Prefix is the original: a URL prefix ("https://charts.jetstack.io",
	// "https://github.com/fluxcd", "oci://quay.io/jetstack") or a registry host with an
	// optional path ("quay.io", "docker.io/library"), which covers both images and oci://
	// charts there.
	Prefix string `json:"prefix"`
	// Mirror is what is dialled instead, in the same form. A registry mirror written with
	// http:// is reached over plain HTTP.
	Mirror string `json:"mirror"`
}

// Rewrite returns the address to dial for an upstream URL or image reference u, by the
// longest prefix of upstreams that matches u on a path boundary, and whether the mirror of
// a registry is to be reached over plain HTTP. u is returned unchanged when nothing matches.
// For an image reference ("quay.io/jetstack/cert-manager-controller:v1.16.0") and an oci://
// URL, a prefix written bare or with oci:// matches; an http(s):// prefix matches only
// http(s):// URLs. The result keeps u's form.
func Rewrite(upstreams []Upstream, u string) (string, bool) {
	scheme, rest := splitScheme(u)
	best, bestLen := -1, -1
	for i, up := range upstreams {
		ps, pr := splitScheme(strings.TrimSuffix(up.Prefix, "/"))
		registryForm := scheme == "" || scheme == "oci"
		switch {
		case ps == scheme:
		case registryForm && (ps == "" || ps == "oci"):
		default:
			continue
		}
		if !hasPathPrefix(rest, pr) || len(pr) <= bestLen {
			continue
		}
		best, bestLen = i, len(pr)
	}
	if best < 0 {
		return u, false
	}
	ms, mr := splitScheme(strings.TrimSuffix(upstreams[best].Mirror, "/"))
	tail := rest[bestLen:]
	if scheme == "" || scheme == "oci" {
		out := mr + tail
		if scheme == "oci" {
			out = "oci://" + out
		}
		return out, ms == "http"
	}
	if ms == "" {
		ms = scheme
	}
	return ms + "://" + mr + tail, false
}

// splitScheme splits "https://host/p" into "https" and "host/p"; a string without "://" has
// no scheme.
func splitScheme(s string) (string, string) {
	if i := strings.Index(s, "://"); i > 0 {
		return strings.ToLower(s[:i]), s[i+3:]
	}
	return "", s
}

// hasPathPrefix says whether s starts with prefix on a boundary: the end, "/", "@" (a
// digest), "?" or "#" follows, or ":" (a tag) after a prefix with a path (after a bare host,
// ":" starts a port: another address).
func hasPathPrefix(s, prefix string) bool {
	if prefix == "" || len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return false
	}
	if len(s) == len(prefix) {
		return true
	}
	switch s[len(prefix)] {
	case '/', '@', '?', '#':
		return true
	case ':':
		return strings.Contains(prefix, "/")
	}
	return false
}

func (s *Spec) validateFlux(add func(string, ...any)) {
	gits := map[string]bool{}
	for _, g := range s.Git {
		gits[g.Name] = true
	}
	seen := map[string]bool{}
	for i, f := range s.Flux {
		fld := fmt.Sprintf("flux[%d]", i)
		switch {
		case f.Git == "":
			add("%s.git: required (the name of an item of git: holding the entry point)", fld)
		case !gits[f.Git]:
			add("%s.git: %q is not the name of an item of git:; fix: list the repository under git: and name it here", fld, f.Git)
		}
		p := strings.TrimPrefix(f.Path, "./")
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || strings.Contains("/"+p+"/", "/../") {
			add("%s.path: %q must be a relative folder inside the repository (clusters/production)", fld, f.Path)
		}
		if f.Name != "" && !nameRE.MatchString(f.Name) {
			add("%s.name: %q is not a Kubernetes object name", fld, f.Name)
		}
		if f.Namespace != "" && !nameRE.MatchString(f.Namespace) {
			add("%s.namespace: %q is not a Kubernetes namespace name", fld, f.Namespace)
		}
		key := f.RootNamespace() + "/" + f.RootName()
		if seen[key] {
			add("%s: a second entry point with root objects %s; fix: give each entry point its own name", fld, key)
		}
		seen[key] = true
	}
	for i, up := range s.Upstreams {
		fld := fmt.Sprintf("upstreams[%d]", i)
		for _, v := range []struct{ name, val string }{{"prefix", up.Prefix}, {"mirror", up.Mirror}} {
			if v.val == "" {
				add("%s.%s: required", fld, v.name)
				continue
			}
			scheme, rest := splitScheme(v.val)
			switch scheme {
			case "", "oci", "http", "https":
			default:
				add("%s.%s: %q: want an http(s):// or oci:// URL prefix or a registry host", fld, v.name, v.val)
				continue
			}
			if rest == "" || strings.ContainsAny(rest, " ?#") {
				add("%s.%s: %q: want an http(s):// or oci:// URL prefix or a registry host, without query", fld, v.name, v.val)
				continue
			}
			if scheme == "http" || scheme == "https" {
				if u, err := url.Parse(v.val); err != nil || u.Host == "" {
					add("%s.%s: %q is not a URL", fld, v.name, v.val)
				} else if u.User != nil {
					add("%s.%s: %q carries credentials; fix: keep them in ~/.git-credentials or the Docker config, never in the spec", fld, v.name, v.val)
				}
			}
		}
	}
}
