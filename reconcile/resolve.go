package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-gitops/ferry/api"
	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
)

// Resolving Flux sources from the cache: a GitRepository, OCIRepository, HelmRepository or
// HelmChart names an upstream (a URL and a ref, a chart and a version); the current bundle
// records the upstream identity of each item it carries. Resolution matches the two and never
// dials the URL (docs/flux.md, "Sources").

// sourceError is a source that cannot be resolved, with the condition reason to report.
type sourceError struct {
	reason string
	msg    string
}

func (e *sourceError) Error() string { return e.msg }

// notCarried returns a SourceNotCarried error. Its message starts with the reason, so it reads
// the same where only messages are shown (flux get).
func notCarried(format string, args ...any) error {
	return &sourceError{reason: api.SourceNotCarriedReason, msg: api.SourceNotCarriedReason + ": " + fmt.Sprintf(format, args...)}
}

// sourceReason returns the condition reason for a resolution error: SourceNotCarried,
// ArtifactFailed (a source object missing or unreadable, a carried item damaged), or the one
// the error names.
func sourceReason(err error) string {
	var se *sourceError
	if errors.As(err, &se) {
		return se.reason
	}
	return "ArtifactFailed"
}

// resolved is what a source object resolves to in the current bundle.
type resolved struct {
	// revision is Flux's revision string: "main@sha1:<commit>", "6.9.2@sha256:<digest>",
	// "6.9.2" (a chart), "sha256:<digest>" (a HelmRepository's list of charts).
	revision string
	// digest and size are the artifact's (the tree's layer, the chart's archive).
	digest string
	size   int64
	// item is the carried item (nil for a HelmRepository).
	item *cache.RecordItem
	// tree is set for a source of manifests (a Kustomization's sourceRef).
	tree *source
	// chart is set for a source of a chart (a HelmChart; an OCIRepository of a chart).
	chart *chartItem
	// charts lists a HelmRepository's carried charts, "name version".
	charts []string
	// composed is set for an ExternalArtifact: the files of the tree its ArtifactGenerator
	// composed, by path; origin is the revision of the source its originRevision names.
	composed map[string][]byte
	origin   string
}

// resolveRef resolves the source object of kind kind named name in namespace ns, once per pass.
func (p *pass) resolveRef(ctx context.Context, r *Reconciler, kind, ns, name string) (*resolved, error) {
	key := objKey{Kind: kind, NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
	if res, ok := p.lookup(key); ok {
		return res.res, res.err
	}
	res, err := p.resolveKey(ctx, r, key)
	res, err = r.granted(ctx, p, key, res, err)
	p.keep(key, resolution{res, err})
	return res, err
}

// lookup returns the resolution of key made earlier in the pass.
func (p *pass) lookup(key objKey) (resolution, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	res, ok := p.resolved[key]
	return res, ok
}

// keep records the resolution of key for the rest of the pass.
func (p *pass) keep(key objKey, res resolution) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resolved[key] = res
}

type resolution struct {
	res *resolved
	err error
}

func (p *pass) resolveKey(ctx context.Context, r *Reconciler, key objKey) (*resolved, error) {
	if key.Kind == sourcev1.ExternalArtifactKind {
		return p.resolveExternalArtifact(ctx, r, key)
	}
	k := kindNamed(key.Kind)
	if k == nil || !k.source {
		return nil, &sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("source kind %q is not supported (GitRepository, OCIRepository, HelmRepository, HelmChart, ExternalArtifact)", key.Kind)}
	}
	o, ok := p.objects[key]
	if !ok {
		o = k.new()
		if err := r.client.Get(ctx, key.NamespacedName, o.api()); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("%s '%s' not found", key.Kind, key.NamespacedName)
			}
			return nil, fmt.Errorf("%s '%s': %w", key.Kind, key.NamespacedName, err)
		}
	}
	switch s := o.(type) {
	case gitRepository:
		return p.resolveGit(ctx, s.GitRepository)
	case ociRepository:
		return p.resolveOCI(ctx, s.OCIRepository)
	case helmRepository:
		return p.resolveHelmRepository(s.HelmRepository)
	case helmChart:
		return p.resolveHelmChart(ctx, r, s.HelmChart)
	}
	return nil, fmt.Errorf("%s '%s': not a source", key.Kind, key.NamespacedName)
}

// gitItem is a carried Git item with its pack config.
type gitItem struct {
	item *cache.RecordItem
	cfg  bundle.GitConfig
}

// gitItems reads the pack config of every Git item of the pass's record, once.
func (p *pass) gitItems(ctx context.Context) ([]gitItem, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gits != nil || p.record == nil {
		return p.gits, nil
	}
	out := []gitItem{}
	for i := range p.record.Items {
		it := &p.record.Items[i]
		if it.Kind != bundle.KindGit {
			continue
		}
		var idx ocispec.Index
		if err := readJSON(ctx, p.cache, it.Root, &idx); err != nil {
			return nil, fmt.Errorf("git item %q: root index: %w", it.Name, err)
		}
		g := gitItem{item: it, cfg: bundle.GitConfig{URL: it.Source, Commit: it.Revision}}
		if pack, _ := bundle.GitRoles(idx); pack != nil {
			var m ocispec.Manifest
			if err := readJSON(ctx, p.cache, *pack, &m); err != nil {
				return nil, fmt.Errorf("git item %q: pack manifest: %w", it.Name, err)
			}
			if m.Config.MediaType == bundle.GitConfigMediaType {
				if err := readJSON(ctx, p.cache, m.Config, &g.cfg); err != nil {
					return nil, fmt.Errorf("git item %q: pack config: %w", it.Name, err)
				}
			}
		}
		out = append(out, g)
	}
	p.gits = out
	return out, nil
}

// gitRefOf returns a GitRepository's ref as Flux reads it: the branch master when none is set.
func gitRefOf(g *sourcev1.GitRepository) sourcev1.GitRepositoryRef {
	if g.Spec.Reference == nil || (*g.Spec.Reference == sourcev1.GitRepositoryRef{}) {
		return sourcev1.GitRepositoryRef{Branch: "master"}
	}
	return *g.Spec.Reference
}

// describeGitRef says a ref as Flux users write it.
func describeGitRef(ref sourcev1.GitRepositoryRef) string {
	switch {
	case ref.Commit != "" && ref.Branch == "" && ref.Tag == "" && ref.SemVer == "" && ref.Name == "":
		return "commit " + ref.Commit
	case ref.Name != "":
		return "ref " + ref.Name
	case ref.SemVer != "":
		return fmt.Sprintf("semver %q", ref.SemVer)
	case ref.Tag != "":
		return "tag " + ref.Tag
	}
	return "branch " + ref.Branch
}

// specRef writes ref as a ferry.yaml git ref.
func specRef(ref sourcev1.GitRepositoryRef) string {
	switch {
	case ref.Commit != "" && ref.Branch == "" && ref.Tag == "" && ref.SemVer == "" && ref.Name == "":
		return "{commit: " + ref.Commit + "}"
	case ref.SemVer != "":
		return fmt.Sprintf("{semver: %q}", ref.SemVer)
	case ref.Tag != "":
		return "{tag: " + ref.Tag + "}"
	}
	return "{branch: " + ref.Branch + "}"
}

// gitMatch says whether a carried Git item was resolved from ref, and the name Flux puts before
// the commit in the revision ("" for a commit ref).
func gitMatch(ref sourcev1.GitRepositoryRef, cfg bundle.GitConfig) (bool, string) {
	commitOK := ref.Commit == "" || ref.Commit == cfg.Commit
	switch {
	case ref.Name != "":
		return cfg.ResolvedRef == ref.Name && commitOK, ref.Name
	case ref.SemVer != "":
		tag := strings.TrimPrefix(cfg.ResolvedRef, "refs/tags/")
		if tag == cfg.ResolvedRef {
			return false, ""
		}
		if cfg.Ref.SemVer == ref.SemVer {
			return true, tag
		}
		c, err := semver.NewConstraint(ref.SemVer)
		v, verr := semver.NewVersion(tag)
		return err == nil && verr == nil && c.Check(v), tag
	case ref.Tag != "":
		return (cfg.ResolvedRef == "refs/tags/"+ref.Tag || cfg.Ref.Tag == ref.Tag) && commitOK, ref.Tag
	case ref.Branch != "":
		return (cfg.ResolvedRef == "refs/heads/"+ref.Branch || cfg.Ref.Branch == ref.Branch) && commitOK, ref.Branch
	}
	return ref.Commit != "" && ref.Commit == cfg.Commit, ""
}

// resolveGit finds the Git item carried from g's URL at g's ref.
func (p *pass) resolveGit(ctx context.Context, g *sourcev1.GitRepository) (*resolved, error) {
	items, err := p.gitItems(ctx)
	if err != nil {
		return nil, err
	}
	ref := gitRefOf(g)
	want := bundle.NormalURL(g.Spec.URL)
	var same []string
	for _, it := range items {
		if bundle.NormalURL(it.cfg.URL) != want {
			continue
		}
		ok, name := gitMatch(ref, it.cfg)
		if !ok {
			at := it.cfg.ResolvedRef
			if at == "" {
				at = "commit " + it.cfg.Commit
			}
			same = append(same, fmt.Sprintf("%s (item %s)", at, it.item.Name))
			continue
		}
		src, err := findSource(ctx, p.cache, p.record, it.item.Name)
		if err != nil {
			return nil, err
		}
		rev := "sha1:" + it.cfg.Commit
		if name != "" {
			rev = name + "@" + rev
		}
		return &resolved{revision: rev, digest: string(src.flux.Digest), size: src.flux.Size, item: it.item, tree: src}, nil
	}
	msg := fmt.Sprintf("the bundle%s carries no Git item from %s at %s", p.sequence(), g.Spec.URL, describeGitRef(ref))
	if len(same) > 0 {
		msg += "; it carries that URL at " + strings.Join(same, ", ")
	}
	return nil, notCarried("%s: add it to ferry.yaml: git: [{name: %s, url: %s, ref: %s}]", msg, g.Name, g.Spec.URL, specRef(ref))
}

// sequence says which bundle the pass reads, for messages.
func (p *pass) sequence() string {
	if p.record == nil {
		return " (none imported yet)"
	}
	return fmt.Sprintf(" (sequence %d)", p.record.Sequence)
}

// ociRefOf returns an OCIRepository's ref as Flux reads it: the tag latest when none is set.
func ociRefOf(o *sourcev1.OCIRepository) sourcev1.OCIRepositoryRef {
	if o.Spec.Reference == nil || (*o.Spec.Reference == sourcev1.OCIRepositoryRef{}) {
		return sourcev1.OCIRepositoryRef{Tag: "latest"}
	}
	return *o.Spec.Reference
}

// ociMatch says whether a tag (or version) and digest were resolved from ref.
func ociMatch(ref sourcev1.OCIRepositoryRef, tag, dgst string) bool {
	switch {
	case ref.Digest != "":
		return ref.Digest == dgst
	case ref.SemVer != "":
		c, err := semver.NewConstraint(ref.SemVer)
		v, verr := semver.NewVersion(tag)
		return err == nil && verr == nil && c.Check(v)
	}
	return ref.Tag == tag
}

func describeOCIRef(ref sourcev1.OCIRepositoryRef) string {
	switch {
	case ref.Digest != "":
		return "digest " + ref.Digest
	case ref.SemVer != "":
		return fmt.Sprintf("semver %q", ref.SemVer)
	}
	return "tag " + ref.Tag
}

// resolveOCI finds the item carried from o's URL at o's ref: a chart pushed to a registry, or
// an image or artifact whose manifest has one Flux content layer.
func (p *pass) resolveOCI(ctx context.Context, o *sourcev1.OCIRepository) (*resolved, error) {
	if !strings.HasPrefix(o.Spec.URL, "oci://") {
		return nil, &sourceError{reason: "URLInvalid", msg: fmt.Sprintf("url %q must start with oci://", o.Spec.URL)}
	}
	ref := ociRefOf(o)
	want := bundle.NormalURL(o.Spec.URL)
	repo := strings.TrimPrefix(want, "oci://")
	var best *cache.RecordItem
	var bestTag string
	var bestVer *semver.Version
	if p.record != nil {
		for i := range p.record.Items {
			it := &p.record.Items[i]
			var tag, dgst string
			switch it.Kind {
			case bundle.KindChart:
				if bundle.NormalURL(it.Source) != want {
					continue
				}
				tag, dgst = it.Revision, string(it.Root.Digest)
			case bundle.KindImage, bundle.KindArtifact:
				name, t, ok := splitImageSource(it.Source)
				if !ok || strings.ToLower(name) != repo {
					continue
				}
				tag, dgst = t, string(it.Root.Digest)
			default:
				continue
			}
			if !ociMatch(ref, tag, dgst) {
				continue
			}
			v, _ := semver.NewVersion(tag)
			if best == nil || (ref.SemVer != "" && v != nil && bestVer != nil && v.GreaterThan(bestVer)) {
				best, bestTag, bestVer = it, tag, v
			}
		}
	}
	if best == nil {
		return nil, notCarried("the bundle%s carries nothing from %s at %s: add it to ferry.yaml (charts: with repository: %s, or images: with image: %s)",
			p.sequence(), o.Spec.URL, describeOCIRef(ref), ociParent(o.Spec.URL), repo)
	}
	rev := string(best.Root.Digest)
	if bestTag != "" && ref.Digest == "" {
		rev = bestTag + "@" + rev
	}
	res := &resolved{revision: rev, digest: string(best.Root.Digest), size: best.Root.Size, item: best}
	if best.Kind == bundle.KindChart {
		ch, err := findChart(ctx, p.cache, p.record, best.Name)
		if err != nil {
			return nil, err
		}
		res.chart = ch
		return res, nil
	}
	src, err := findArtifactTree(ctx, p.cache, best)
	if err != nil {
		return nil, err
	}
	res.tree, res.digest, res.size = src, string(src.flux.Digest), src.flux.Size
	return res, nil
}

// ociParent is the repository an OCI chart URL's chart lives in, for a ferry.yaml hint.
func ociParent(u string) string {
	if i := strings.LastIndex(u, "/"); i > len("oci://") {
		return u[:i]
	}
	return u
}

// splitImageSource splits an image item's source, "repo:tag" or "repo@digest".
func splitImageSource(s string) (repo, tag string, ok bool) {
	if i := strings.Index(s, "@"); i > 0 {
		return s[:i], "", true
	}
	i := strings.LastIndex(s, ":")
	if i <= 0 || strings.Contains(s[i:], "/") {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// findArtifactTree reads an image or artifact item as a tree of manifests: its root must be a
// manifest with one layer of the Flux content type (as `flux push artifact` writes it).
func findArtifactTree(ctx context.Context, c *cache.Snapshot, it *cache.RecordItem) (*source, error) {
	var m ocispec.Manifest
	if err := readJSON(ctx, c, it.Root, &m); err != nil {
		return nil, fmt.Errorf("item %q: manifest: %w", it.Name, err)
	}
	for _, l := range m.Layers {
		if l.MediaType == bundle.GitFluxContentMediaType {
			return &source{item: *it, commit: it.Revision, flux: l}, nil
		}
	}
	return nil, &sourceError{reason: "ArtifactFailed", msg: fmt.Sprintf("item %q (%s) has no layer of type %s: it is not an artifact of manifests", it.Name, it.Source, bundle.GitFluxContentMediaType)}
}

// repoCharts returns the chart items carried from a Helm repository URL.
func (p *pass) repoCharts(repoURL string) []*cache.RecordItem {
	if p.record == nil {
		return nil
	}
	prefix := bundle.NormalURL(repoURL) + "/"
	var out []*cache.RecordItem
	for i := range p.record.Items {
		it := &p.record.Items[i]
		if it.Kind == bundle.KindChart && strings.HasPrefix(bundle.NormalURL(it.Source), prefix) &&
			!strings.Contains(strings.TrimPrefix(bundle.NormalURL(it.Source), prefix), "/") {
			out = append(out, it)
		}
	}
	return out
}

// resolveHelmRepository lists the charts carried from h's URL; none is SourceNotCarried.
func (p *pass) resolveHelmRepository(h *sourcev1.HelmRepository) (*resolved, error) {
	charts := p.repoCharts(h.Spec.URL)
	if len(charts) == 0 {
		return nil, notCarried("the bundle%s carries no chart from %s: add one to ferry.yaml: charts: [{name: <chart>, repository: %s, version: <version>}]", p.sequence(), h.Spec.URL, h.Spec.URL)
	}
	var lines []string
	sum := sha256.New()
	for _, it := range charts {
		name := it.Source[strings.LastIndex(it.Source, "/")+1:]
		lines = append(lines, name+" "+it.Revision)
		fmt.Fprintf(sum, "%s %s %s\n", it.Source, it.Revision, it.Root.Digest)
	}
	sort.Strings(lines)
	d := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	return &resolved{revision: d, digest: d, charts: lines}, nil
}

// resolveChart finds the chart named chart, at a version satisfying version ("" or "*": the
// highest stable one), carried from the HelmRepository named by ns/name.
func (p *pass) resolveChart(ctx context.Context, r *Reconciler, repoNS, repoName, chartName, version string) (*resolved, error) {
	repoKey := objKey{Kind: sourcev1.HelmRepositoryKind, NamespacedName: types.NamespacedName{Namespace: repoNS, Name: repoName}}
	o, ok := p.objects[repoKey]
	if !ok {
		o = helmRepository{&sourcev1.HelmRepository{}}
		if err := r.client.Get(ctx, repoKey.NamespacedName, o.api()); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("HelmRepository '%s' not found", repoKey.NamespacedName)
			}
			return nil, fmt.Errorf("HelmRepository '%s': %w", repoKey.NamespacedName, err)
		}
	}
	repo := o.(helmRepository).HelmRepository
	if version == "" {
		version = "*"
	}
	c, err := semver.NewConstraint(version)
	if err != nil {
		return nil, &sourceError{reason: "InvalidChartReference", msg: fmt.Sprintf("chart %s: version %q is not a semver constraint: %v", chartName, version, err)}
	}
	want := bundle.NormalURL(repo.Spec.URL) + "/" + chartName
	var best *cache.RecordItem
	var bestVer *semver.Version
	var other []string
	for _, it := range p.repoCharts(repo.Spec.URL) {
		if bundle.NormalURL(it.Source) != want {
			continue
		}
		v, err := semver.NewVersion(it.Revision)
		if err != nil || !c.Check(v) {
			other = append(other, it.Revision)
			continue
		}
		if best == nil || v.GreaterThan(bestVer) {
			best, bestVer = it, v
		}
	}
	if best == nil {
		msg := fmt.Sprintf("the bundle%s carries no chart %s from %s at version %q", p.sequence(), chartName, repo.Spec.URL, version)
		if len(other) > 0 {
			msg += "; it carries versions " + strings.Join(other, ", ")
		}
		return nil, notCarried("%s: add it to ferry.yaml: charts: [{name: %s, repository: %s, version: %q}]", msg, chartName, repo.Spec.URL, version)
	}
	ch, err := findChart(ctx, p.cache, p.record, best.Name)
	if err != nil {
		return nil, err
	}
	return r.granted(ctx, p, repoKey, &resolved{revision: best.Revision, digest: string(ch.layer.Digest), size: ch.layer.Size, item: best, chart: ch}, nil)
}

// resolveHelmChart resolves a HelmChart: a chart of a HelmRepository.
func (p *pass) resolveHelmChart(ctx context.Context, r *Reconciler, h *sourcev1.HelmChart) (*resolved, error) {
	if h.Spec.SourceRef.Kind != sourcev1.HelmRepositoryKind {
		return nil, &sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("sourceRef kind %s: sync carries charts from Helm repositories (HelmRepository), not from %s", h.Spec.SourceRef.Kind, h.Spec.SourceRef.Kind)}
	}
	return p.resolveChart(ctx, r, h.Namespace, h.Spec.SourceRef.Name, h.Spec.Chart, h.Spec.Version)
}

// resolveReleaseChart resolves a HelmRelease's chart: spec.chartRef (an OCIRepository or a
// HelmChart) or spec.chart (a chart of a HelmRepository).
func (p *pass) resolveReleaseChart(ctx context.Context, r *Reconciler, h *helmv2.HelmRelease) (*resolved, error) {
	switch {
	case h.Spec.ChartRef != nil:
		ref := h.Spec.ChartRef
		ns := ref.Namespace
		if ns == "" {
			ns = h.Namespace
		}
		if ref.Kind != sourcev1.OCIRepositoryKind && ref.Kind != sourcev1.HelmChartKind {
			return nil, &sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("chartRef kind %q: OCIRepository or HelmChart", ref.Kind)}
		}
		res, err := p.resolveRef(ctx, r, ref.Kind, ns, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("chartRef %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
		}
		if res.chart == nil {
			return nil, &sourceError{reason: "ArtifactFailed", msg: fmt.Sprintf("chartRef %s %s/%s: resolves to item %q, which is not a chart", ref.Kind, ns, ref.Name, res.item.Name)}
		}
		return res, nil
	case h.Spec.Chart != nil:
		t := h.Spec.Chart.Spec
		if t.SourceRef.Kind != sourcev1.HelmRepositoryKind {
			return nil, &sourceError{reason: api.UnsupportedReason, msg: fmt.Sprintf("chart %s: sourceRef kind %s: sync carries charts from Helm repositories (HelmRepository) and OCI repositories (chartRef), not from %s", t.Chart, t.SourceRef.Kind, t.SourceRef.Kind)}
		}
		ns := t.SourceRef.Namespace
		if ns == "" {
			ns = h.Namespace
		}
		res, err := p.resolveChart(ctx, r, ns, t.SourceRef.Name, t.Chart, t.Version)
		if err != nil {
			return nil, fmt.Errorf("chart %s from HelmRepository %s/%s: %w", t.Chart, ns, t.SourceRef.Name, err)
		}
		return res, nil
	}
	return nil, &sourceError{reason: "InvalidChartReference", msg: "neither spec.chart nor spec.chartRef is set"}
}
