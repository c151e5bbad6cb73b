package discover

import (
	"context"
	"fmt"
	"strings"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/spec"
)

// chartWant is a chart as a HelmRelease names it.
type chartWant struct {
	repository, chart, version string
}

// helmRelease fetches and renders one HelmRelease's chart if its source is known; it reports
// whether it did.
func (w *walker) helmRelease(ctx context.Context, p pendingH) (bool, error) {
	h := p.h
	what := fmt.Sprintf("HelmRelease %s/%s", h.Namespace, h.Name)
	want, ok, err := w.releaseChart(h, what, p.from)
	if err != nil || !ok {
		return ok, err
	}
	if want == nil {
		return true, nil
	}
	it, err := w.chart(ctx, *want, what+" ("+p.from+")")
	if err != nil {
		return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
	}
	for _, vf := range h.Spec.ValuesFrom {
		w.warn("%s: valuesFrom %s %s is read in the cluster; images its values would name are not found at pack time", what, vf.Kind, vf.Name)
	}
	archive, err := chartArchive(ctx, w.o.Store, *it)
	if err != nil {
		return false, err
	}
	objs, err := renderChart(ctx, archive, h.GetReleaseName(), h.GetReleaseNamespace(), h.GetValues(), h.Spec.Test != nil && h.Spec.Test.Enable)
	if err != nil {
		return false, fmt.Errorf("%s (%s): %w", what, p.from, err)
	}
	needer := fmt.Sprintf("%s, chart %s %s", what, want.chart, it.Revision)
	for _, u := range objs {
		ns := u.GetNamespace()
		if ns == "" {
			ns = h.GetReleaseNamespace()
		}
		w.workload(u, fmt.Sprintf("%s %s/%s (%s)", u.GetKind(), ns, u.GetName(), needer))
	}
	return true, nil
}

// releaseChart says which chart a HelmRelease needs; ok false while its source is not known,
// a nil chart when it cannot be carried (said in a warning).
func (w *walker) releaseChart(h *helmv2.HelmRelease, what, from string) (*chartWant, bool, error) {
	switch {
	case h.Spec.ChartRef != nil:
		ref := h.Spec.ChartRef
		ns := refNS(ref.Namespace, h.Namespace)
		src := w.source(ref.Kind, ns, ref.Name)
		if src == nil {
			return nil, false, nil
		}
		switch ref.Kind {
		case sourcev1.OCIRepositoryKind:
			var o sourcev1.OCIRepository
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src.Object, &o); err != nil {
				return nil, false, fmt.Errorf("%s: OCIRepository %s/%s: %w", what, ns, ref.Name, err)
			}
			u := strings.TrimSuffix(o.Spec.URL, "/")
			i := strings.LastIndex(u, "/")
			if !strings.HasPrefix(u, "oci://") || i <= len("oci://") {
				w.warn("%s: OCIRepository %s/%s url %q is not oci://registry/path/chart; not followed", what, ns, ref.Name, o.Spec.URL)
				return nil, true, nil
			}
			tag, rng, dgst := ociRef(o.Spec.Reference)
			if dgst != "" {
				w.warn("%s: OCIRepository %s/%s pins digest %s: mirror carries charts by version; list the chart under charts: with its version", what, ns, ref.Name, dgst)
				return nil, true, nil
			}
			return &chartWant{repository: u[:i], chart: u[i+1:], version: tag + rng}, true, nil
		case sourcev1.HelmChartKind:
			var c sourcev1.HelmChart
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src.Object, &c); err != nil {
				return nil, false, fmt.Errorf("%s: HelmChart %s/%s: %w", what, ns, ref.Name, err)
			}
			return w.repoChart(what, ns, c.Spec.SourceRef.Kind, c.Spec.SourceRef.Name, c.Spec.Chart, c.Spec.Version)
		}
		w.warn("%s: chartRef kind %s is not carried by Ferry; not followed", what, ref.Kind)
		return nil, true, nil
	case h.Spec.Chart != nil:
		t := h.Spec.Chart.Spec
		return w.repoChart(what, refNS(t.SourceRef.Namespace, h.Namespace), t.SourceRef.Kind, t.SourceRef.Name, t.Chart, t.Version)
	}
	w.warn("%s (%s): neither spec.chart nor spec.chartRef is set", what, from)
	return nil, true, nil
}

// repoChart is a chart of a HelmRepository.
func (w *walker) repoChart(what, ns, kind, name, chart, version string) (*chartWant, bool, error) {
	if kind != sourcev1.HelmRepositoryKind {
		w.warn("%s: chart %s from a %s is not carried by Ferry (HelmRepository or OCIRepository); not followed", what, chart, kind)
		return nil, true, nil
	}
	src := w.source(kind, ns, name)
	if src == nil {
		return nil, false, nil
	}
	var r sourcev1.HelmRepository
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(src.Object, &r); err != nil {
		return nil, false, fmt.Errorf("%s: HelmRepository %s/%s: %w", what, ns, name, err)
	}
	u := strings.TrimSuffix(r.Spec.URL, "/")
	if r.Spec.Type == sourcev1.HelmRepositoryTypeOCI && !strings.HasPrefix(u, "oci://") {
		u = "oci://" + u
	}
	if version == "" {
		version = "*"
	}
	return &chartWant{repository: u, chart: chart, version: version}, true, nil
}

// chart fetches a chart once per repository, name and version range.
func (w *walker) chart(ctx context.Context, c chartWant, needer string) (*bundle.Item, error) {
	id := bundle.NormalURL(c.repository) + "/" + c.chart + "@" + c.version
	src := fmt.Sprintf("%s/%s@%s", c.repository, c.chart, c.version)
	if it, ok := w.fetched["chart "+id]; ok {
		w.artifact(bundle.KindChart, id, it.Name, src, it.Revision, false, needer)
		return it, nil
	}
	sc := spec.Chart{Repository: c.repository, Chart: c.chart, Version: c.version}
	listed := false
	for _, l := range w.o.Spec.Charts {
		if bundle.NormalURL(l.Repository) == bundle.NormalURL(c.repository) && l.ChartName() == c.chart && l.Version == c.version {
			sc, listed = l, true
			break
		}
	}
	if sc.Name == "" {
		sc.Name = "chart-" + c.chart
	}
	it, err := fetch.Chart(ctx, w.o.Store, sc, w.o.Fetch)
	if err != nil {
		return nil, err
	}
	if !listed {
		// Two ranges that resolve to the same version are one item.
		for _, f := range w.fetched {
			if f.Kind == bundle.KindChart && f.Source == it.Source && f.Revision == it.Revision {
				w.fetched["chart "+id] = f
				w.artifact(bundle.KindChart, id, f.Name, src, f.Revision, false, needer)
				return f, nil
			}
		}
		it.Name = w.names.take(itemName(c.chart, it.Revision))
	}
	w.fetched["chart "+id] = &it
	w.artifact(bundle.KindChart, id, it.Name, src, it.Revision, listed, needer)
	return &it, nil
}
