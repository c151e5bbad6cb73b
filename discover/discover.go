package discover

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/kbuild"
	"github.com/ferry-gitops/ferry/spec"
)

// Options say what to discover and where fetched content goes.
type Options struct {
	Spec *spec.Spec
	// Store receives the Git sources, charts and OCI artifacts discovery fetches to read them
	// (the pack's layout).
	Store fetch.Store
	Fetch *fetch.Options
	// Logger receives one line per artifact found; nil discards.
	Logger *slog.Logger
}

// Artifact is one source, chart or image the entry points need.
type Artifact struct {
	// Kind is git, chart or image (an OCI artifact of manifests is an image item).
	Kind bundle.Kind `json:"kind"`
	// Name is the item's name in the bundle.
	Name string `json:"name"`
	// Source is the upstream as the objects name it: "url@branch:main", the chart's
	// repository/name@version range, the image reference.
	Source string `json:"source"`
	// Revision is what it resolved to when discovery fetched it (a commit, a chart version).
	Revision string `json:"revision,omitempty"`
	// Listed says the spec lists it too (git:, charts:, images:).
	Listed bool `json:"listed,omitempty"`
	// NeededBy names each object that needs it, with where that object came from.
	NeededBy []string `json:"neededBy"`
}

// Result is what discovery found.
type Result struct {
	// Artifacts lists every source, chart and image found, git first, then charts, then
	// images, each sorted by source.
	Artifacts []Artifact `json:"artifacts"`
	// Items are the items discovery fetched into the store (Git sources, charts, OCI
	// artifacts of manifests), the spec's own among them; pack does not fetch them again.
	Items []bundle.Item `json:"-"`
	// Images are the images pack still has to fetch.
	Images []spec.Image `json:"-"`
	// Roots are the objects of each entry point that flux bootstrap's gotk-sync.yaml would
	// hold (its Namespace, GitRepository and Kustomization), for the bundle's cluster item.
	Roots []map[string]any `json:"-"`
	// Warnings say what discovery could not follow, and why.
	Warnings []string `json:"warnings,omitempty"`
}

type objKey struct{ kind, namespace, name string }

func (k objKey) String() string {
	if k.namespace == "" {
		return k.kind + " " + k.name
	}
	return k.kind + " " + k.namespace + "/" + k.name
}

type walker struct {
	o     Options
	log   *slog.Logger
	names namer
	// fetched items by upstream identity (git "url ref", chart "source version", oci "repo ref").
	fetched map[string]*bundle.Item
	arts    map[string]*Artifact // by kind + identity
	order   []string
	// sources and generators built so far, by kind, namespace and name.
	sources  map[objKey]*unstructured.Unstructured
	pendingK []pendingK
	pendingH []pendingH
	done     map[objKey]bool
	warnings []string
	images   []spec.Image
}

type pendingK struct {
	k    *kustomizev1.Kustomization
	from string
}

type pendingH struct {
	h    *helmv2.HelmRelease
	from string
}

// Run builds every Flux entry point of o.Spec and returns what they need.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Spec == nil || o.Store == nil {
		return nil, fmt.Errorf("discover: no spec or store")
	}
	w := &walker{o: o, log: o.Logger, names: namer{used: map[string]bool{}}, fetched: map[string]*bundle.Item{},
		arts: map[string]*Artifact{}, sources: map[objKey]*unstructured.Unstructured{}, done: map[objKey]bool{}}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	for _, g := range o.Spec.Git {
		w.names.used[g.Name] = true
	}
	for _, c := range o.Spec.Charts {
		w.names.used[c.Name] = true
	}
	for _, im := range o.Spec.Images {
		w.names.used[im.Name] = true
	}
	res := &Result{}
	for i, f := range o.Spec.Flux {
		g, ok := w.specGit(f.Git)
		if !ok {
			return nil, fmt.Errorf("flux[%d]: no git item %q", i, f.Git)
		}
		repo, ks, roots, err := rootObjects(f, g)
		if err != nil {
			return nil, fmt.Errorf("flux[%d]: %w", i, err)
		}
		res.Roots = append(res.Roots, roots...)
		w.sources[objKey{sourcev1.GitRepositoryKind, repo.Namespace, repo.Name}] = toUnstructured(repo)
		w.pendingK = append(w.pendingK, pendingK{ks, fmt.Sprintf("ferry.yaml flux[%d]", i)})
	}
	if err := w.loop(ctx); err != nil {
		return nil, err
	}
	for _, k := range w.order {
		a := w.arts[k]
		sort.Strings(a.NeededBy)
		res.Artifacts = append(res.Artifacts, *a)
	}
	rank := map[bundle.Kind]int{bundle.KindGit: 0, bundle.KindChart: 1, bundle.KindImage: 2}
	sort.SliceStable(res.Artifacts, func(i, j int) bool {
		a, b := res.Artifacts[i], res.Artifacts[j]
		if rank[a.Kind] != rank[b.Kind] {
			return rank[a.Kind] < rank[b.Kind]
		}
		return a.Source < b.Source
	})
	seen := map[string]bool{}
	for _, it := range w.fetched {
		if !seen[it.Name] { // two ranges of one chart at one version are one item
			seen[it.Name] = true
			res.Items = append(res.Items, *it)
		}
	}
	sort.Slice(res.Items, func(i, j int) bool { return res.Items[i].Name < res.Items[j].Name })
	res.Images = w.images
	res.Warnings = w.warnings
	return res, nil
}

func (w *walker) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, m := range w.warnings {
		if m == msg {
			return
		}
	}
	w.warnings = append(w.warnings, msg)
	w.log.Warn("discovery: " + msg)
}

func (w *walker) specGit(name string) (spec.Git, bool) {
	for _, g := range w.o.Spec.Git {
		if g.Name == name {
			return g, true
		}
	}
	return spec.Git{}, false
}

// rootObjects returns the GitRepository and Kustomization flux bootstrap would write for an
// entry point, and them with their Namespace as cluster objects.
func rootObjects(f spec.Flux, g spec.Git) (*sourcev1.GitRepository, *kustomizev1.Kustomization, []map[string]any, error) {
	ref := &sourcev1.GitRepositoryRef{Branch: g.Ref.Branch, Tag: g.Ref.Tag, SemVer: g.Ref.SemVer, Commit: g.Ref.Commit}
	repo := &sourcev1.GitRepository{
		TypeMeta:   metav1.TypeMeta{APIVersion: sourcev1.GroupVersion.String(), Kind: sourcev1.GitRepositoryKind},
		ObjectMeta: metav1.ObjectMeta{Name: f.RootName(), Namespace: f.RootNamespace()},
		Spec:       sourcev1.GitRepositorySpec{URL: g.URL, Reference: ref, Interval: metav1.Duration{Duration: 60e9}},
	}
	p := "./" + strings.TrimPrefix(path.Clean(strings.TrimPrefix(f.Path, "./")), "./")
	ks := &kustomizev1.Kustomization{
		TypeMeta:   metav1.TypeMeta{APIVersion: kustomizev1.GroupVersion.String(), Kind: kustomizev1.KustomizationKind},
		ObjectMeta: metav1.ObjectMeta{Name: f.RootName(), Namespace: f.RootNamespace()},
		Spec: kustomizev1.KustomizationSpec{
			Interval:  metav1.Duration{Duration: 600e9},
			Path:      p,
			Prune:     true,
			SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: f.RootName()},
		},
	}
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": f.RootNamespace()}}
	var out []map[string]any
	out = append(out, ns)
	for _, o := range []runtime.Object{repo, ks} {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, nil, nil, err
		}
		unstructured.RemoveNestedField(m, "status")
		unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
		out = append(out, m)
	}
	return repo, ks, out, nil
}

func toUnstructured(o runtime.Object) *unstructured.Unstructured {
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	return &unstructured.Unstructured{Object: m}
}

// loop processes Kustomizations and HelmReleases whose sources are known until none is left
// or none can go on.
func (w *walker) loop(ctx context.Context) error {
	for {
		progress := false
		var ks []pendingK
		todo := w.pendingK
		w.pendingK = nil // what the builds below find is appended here
		for _, p := range todo {
			ok, err := w.kustomization(ctx, p)
			if err != nil {
				return err
			}
			if !ok {
				ks = append(ks, p)
				continue
			}
			progress = true
		}
		w.pendingK = append(ks, w.pendingK...)
		var hs []pendingH
		todoH := w.pendingH
		w.pendingH = nil
		for _, p := range todoH {
			ok, err := w.helmRelease(ctx, p)
			if err != nil {
				return err
			}
			if !ok {
				hs = append(hs, p)
				continue
			}
			progress = true
		}
		w.pendingH = append(hs, w.pendingH...)
		if !progress {
			break
		}
	}
	for _, p := range w.pendingK {
		ref := p.k.Spec.SourceRef
		w.warn("Kustomization %s/%s (%s): its sourceRef %s %s is not among the objects the entry points build; not followed", p.k.Namespace, p.k.Name, p.from, ref.Kind, refNS(ref.Namespace, p.k.Namespace)+"/"+ref.Name)
	}
	for _, p := range w.pendingH {
		w.warn("HelmRelease %s/%s (%s): its chart's source is not among the objects the entry points build; not followed", p.h.Namespace, p.h.Name, p.from)
	}
	return nil
}

func refNS(ns, def string) string {
	if ns == "" {
		return def
	}
	return ns
}

// source returns a source object found so far.
func (w *walker) source(kind, ns, name string) *unstructured.Unstructured {
	return w.sources[objKey{kind, ns, name}]
}

// artifact records that needer needs the artifact of kind and identity id.
func (w *walker) artifact(kind bundle.Kind, id, name, source, revision string, listed bool, needer string) *Artifact {
	key := string(kind) + " " + id
	a, ok := w.arts[key]
	if !ok {
		a = &Artifact{Kind: kind, Name: name, Source: source, Revision: revision, Listed: listed}
		w.arts[key] = a
		w.order = append(w.order, key)
		w.log.Info("discovered", "kind", kind, "item", name, "source", source, "neededBy", needer)
	}
	for _, n := range a.NeededBy {
		if n == needer {
			return a
		}
	}
	a.NeededBy = append(a.NeededBy, needer)
	return a
}

// kustomization builds one Kustomization if its source is known; it reports whether it did.
func (w *walker) kustomization(ctx context.Context, p pendingK) (bool, error) {
	k := p.k
	key := objKey{kustomizev1.KustomizationKind, k.Namespace, k.Name}
	if w.done[key] {
		return true, nil
	}
	what := fmt.Sprintf("Kustomization %s/%s", k.Namespace, k.Name)
	ref := k.Spec.SourceRef
	ns := refNS(ref.Namespace, k.Namespace)
	fsys := filesys.MakeFsInMemory()
	switch ref.Kind {
	case sourcev1.GitRepositoryKind, sourcev1.OCIRepositoryKind:
		src := w.source(ref.Kind, ns, ref.Name)
		if src == nil {
			return false, nil
		}
		it, err := w.treeSource(ctx, src, what+" ("+p.from+")")
		if err != nil {
			return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
		}
		if it == nil {
			w.done[key] = true
			return true, nil
		}
		if err := extractTree(ctx, w.o.Store, *it, fsys, kbuild.SourceRoot); err != nil {
			return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
		}
	case sourcev1.ExternalArtifactKind:
		ok, err := w.externalArtifact(ctx, ns, ref.Name, what+" ("+p.from+")", fsys)
		if err != nil {
			return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
		}
		if !ok {
			return false, nil
		}
	default:
		w.warn("%s (%s): sourceRef kind %s is not carried by Ferry; not followed", what, p.from, ref.Kind)
		w.done[key] = true
		return true, nil
	}
	w.done[key] = true
	var vars map[string]string
	if pb := k.Spec.PostBuild; pb != nil {
		vars = map[string]string{}
		for n, v := range pb.Substitute {
			vars[n] = v
		}
		for _, s := range pb.SubstituteFrom {
			w.warn("%s: postBuild.substituteFrom %s %s is read in the cluster; its variables are not known at pack time", what, s.Kind, s.Name)
		}
	}
	objs, err := kbuild.Build(fsys, k.Spec.Path, kbuild.OverlayOf(k), vars)
	if err != nil {
		return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
	}
	// As sync applies them: without Flux's controllers, at the Flux API versions served now.
	objs, _ = kbuild.SkipFluxControllers(objs)
	if _, err := kbuild.MigrateFluxAPIs(objs); err != nil {
		return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
	}
	defNS := k.Spec.TargetNamespace
	if defNS == "" {
		defNS = k.Namespace
	}
	from := what + " path " + k.Spec.Path
	for _, u := range objs {
		if err := w.object(u, defNS, from); err != nil {
			return false, err
		}
	}
	return true, nil
}

// object takes one built object: a Flux source, Kustomization or HelmRelease to follow, a
// workload whose images are needed.
func (w *walker) object(u *unstructured.Unstructured, defNS, from string) error {
	group := u.GroupVersionKind().Group
	ns := u.GetNamespace()
	if ns == "" {
		ns = defNS
		u.SetNamespace(ns)
	}
	id := fmt.Sprintf("%s %s/%s", u.GetKind(), ns, u.GetName())
	switch {
	case group == sourcev1.GroupVersion.Group || group == "source.extensions.fluxcd.io":
		w.sources[objKey{u.GetKind(), ns, u.GetName()}] = u
	case group == kustomizev1.GroupVersion.Group && u.GetKind() == kustomizev1.KustomizationKind:
		var k kustomizev1.Kustomization
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &k); err != nil {
			return fmt.Errorf("%s (%s): %w", id, from, err)
		}
		w.pendingK = append(w.pendingK, pendingK{&k, from})
	case group == helmv2.GroupVersion.Group && u.GetKind() == helmv2.HelmReleaseKind:
		var h helmv2.HelmRelease
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &h); err != nil {
			return fmt.Errorf("%s (%s): %w", id, from, err)
		}
		w.pendingH = append(w.pendingH, pendingH{&h, from})
	default:
		w.workload(u, id+" ("+from+")")
	}
	return nil
}

// workload records the images a workload's Pod spec names.
func (w *walker) workload(u *unstructured.Unstructured, needer string) {
	for _, s := range imagesOf(u) {
		ref, err := parseImage(s)
		if err != nil {
			w.warn("%s: %v; not carried", needer, err)
			continue
		}
		w.image(ref, needer)
	}
}

// image records an image to carry, matched against the spec's own images.
func (w *walker) image(ref imageRef, needer string) {
	id := ref.String()
	for _, im := range w.o.Spec.Images {
		if strings.EqualFold(im.Image, ref.repo) && (ref.tag != "" && im.Tag == ref.tag || ref.digest != "" && im.Digest == ref.digest) {
			w.artifact(bundle.KindImage, id, im.Name, id, "", true, needer)
			return
		}
	}
	if _, ok := w.arts[string(bundle.KindImage)+" "+id]; !ok {
		parts := strings.Split(ref.repo, "/")
		short := strings.Join(parts[max(1, len(parts)-2):], "-")
		v := ref.tag
		if v == "" {
			v = strings.TrimPrefix(ref.digest, "sha256:")[:12]
		}
		name := w.names.take(itemName(short, v))
		w.images = append(w.images, spec.Image{Name: name, Image: ref.repo, Tag: ref.tag, Digest: ref.digest})
		w.artifact(bundle.KindImage, id, name, id, "", false, needer)
		return
	}
	w.artifact(bundle.KindImage, id, "", id, "", false, needer)
}

// treeSource fetches the tree of a GitRepository or OCIRepository; nil when it cannot be
// carried (said in a warning).
func (w *walker) treeSource(ctx context.Context, src *unstructured.Unstructured, needer string) (*bundle.Item, error) {
	switch src.GetKind() {
	case sourcev1.GitRepositoryKind:
		var g sourcev1.GitRepository
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src.Object, &g); err != nil {
			return nil, fmt.Errorf("GitRepository %s/%s: %w", src.GetNamespace(), src.GetName(), err)
		}
		return w.git(ctx, &g, needer)
	case sourcev1.OCIRepositoryKind:
		var o sourcev1.OCIRepository
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src.Object, &o); err != nil {
			return nil, fmt.Errorf("OCIRepository %s/%s: %w", src.GetNamespace(), src.GetName(), err)
		}
		return w.ociArtifact(ctx, &o, needer)
	}
	return nil, nil
}

// gitRef writes a Flux Git ref as the mirror spec's, and as text.
func gitRef(r *sourcev1.GitRepositoryRef) (spec.GitRef, string) {
	switch {
	case r == nil || *r == (sourcev1.GitRepositoryRef{}):
		return spec.GitRef{Branch: "master"}, "branch:master"
	case r.Commit != "" && r.Branch == "" && r.Tag == "" && r.SemVer == "" && r.Name == "":
		return spec.GitRef{Commit: r.Commit}, "commit:" + r.Commit
	case r.SemVer != "":
		return spec.GitRef{SemVer: r.SemVer}, "semver:" + r.SemVer
	case r.Tag != "":
		return spec.GitRef{Tag: r.Tag}, "tag:" + r.Tag
	case r.Branch != "":
		return spec.GitRef{Branch: r.Branch}, "branch:" + r.Branch
	}
	return spec.GitRef{}, "name:" + r.Name
}

func specGitRef(r spec.GitRef) string {
	switch {
	case r.Commit != "":
		return "commit:" + r.Commit
	case r.SemVer != "":
		return "semver:" + r.SemVer
	case r.Tag != "":
		return "tag:" + r.Tag
	}
	return "branch:" + r.Branch
}

// git fetches the Git item a GitRepository names (once per URL and ref).
func (w *walker) git(ctx context.Context, g *sourcev1.GitRepository, needer string) (*bundle.Item, error) {
	ref, refText := gitRef(g.Spec.Reference)
	if strings.HasPrefix(refText, "name:") {
		w.warn("GitRepository %s/%s: ref.name %q is not carried by mirror (use branch, tag, semver or commit); not followed", g.Namespace, g.Name, g.Spec.Reference.Name)
		return nil, nil
	}
	id := bundle.NormalURL(g.Spec.URL) + "@" + refText
	src := spec.Git{URL: g.Spec.URL, Ref: ref}
	listed := false
	for _, sg := range w.o.Spec.Git {
		if bundle.NormalURL(sg.URL) == bundle.NormalURL(g.Spec.URL) && specGitRef(sg.Ref) == refText {
			src, listed = sg, true
			break
		}
	}
	if src.Name == "" {
		base := strings.TrimSuffix(path.Base(bundle.NormalURL(g.Spec.URL)), ".git")
		src.Name = w.names.take(itemName(base, strings.SplitN(refText, ":", 2)[1]))
	}
	if it, ok := w.fetched["git "+id]; ok {
		w.artifact(bundle.KindGit, id, it.Name, g.Spec.URL+"@"+refText, it.Revision, listed, needer)
		return it, nil
	}
	it, err := fetch.Git(ctx, w.o.Store, src, w.o.Fetch)
	if err != nil {
		return nil, err
	}
	w.fetched["git "+id] = &it
	w.artifact(bundle.KindGit, id, it.Name, g.Spec.URL+"@"+refText, it.Revision, listed, needer)
	return &it, nil
}

// ociRef writes a Flux OCI ref as tag, semver and digest.
func ociRef(r *sourcev1.OCIRepositoryRef) (tag, semver, digest string) {
	switch {
	case r == nil || *r == (sourcev1.OCIRepositoryRef{}):
		return "latest", "", ""
	case r.Digest != "":
		return "", "", r.Digest
	case r.SemVer != "":
		return "", r.SemVer, ""
	}
	return r.Tag, "", ""
}

// ociArtifact fetches the OCI artifact of manifests an OCIRepository names, as an image item.
func (w *walker) ociArtifact(ctx context.Context, o *sourcev1.OCIRepository, needer string) (*bundle.Item, error) {
	repo := strings.TrimPrefix(o.Spec.URL, "oci://")
	tag, rng, dgst := ociRef(o.Spec.Reference)
	id := repo + "@" + tag + rng + dgst
	if it, ok := w.fetched["oci "+id]; ok {
		w.artifact(bundle.KindImage, id, it.Name, id, it.Revision, false, needer)
		return it, nil
	}
	v := tag + rng
	if dgst != "" {
		v = strings.TrimPrefix(dgst, "sha256:")
	}
	name := w.names.take(itemName(path.Base(repo), v))
	it, err := fetch.Image(ctx, w.o.Store, spec.Image{Name: name, Image: repo, Tag: tag, SemVer: rng, Digest: dgst}, w.o.Fetch)
	if err != nil {
		return nil, err
	}
	w.fetched["oci "+id] = &it
	w.artifact(bundle.KindImage, id, it.Name, id, it.Source, false, needer)
	return &it, nil
}
