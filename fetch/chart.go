package fetch

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// Chart resolves src's version and copies the chart into dst as a Helm OCI chart manifest (see docs/chart-artifacts.md).
func Chart(ctx context.Context, dst Store, src spec.Chart, o *Options) (bundle.Item, error) {
	source := chartSource(src)
	fail := func(err error) (bundle.Item, error) {
		return bundle.Item{}, fmt.Errorf("chart %s (%s): %w", src.Name, source, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	var (
		r   chartResult
		err error
	)
	if src.IsOCI() {
		r, err = chartFromOCI(ctx, dst, src, o)
	} else {
		r, err = chartFromHTTP(ctx, dst, src, o)
	}
	if err != nil {
		return fail(err)
	}
	attrs := []any{"name", src.Name, "source", source, "version", r.version, "digest", r.manifest.Digest}
	if r.mirror != "" {
		attrs = append(attrs, "mirror", r.mirror)
	}
	o.logger().Info("chart resolved", attrs...)
	return bundle.Item{
		Name:       src.Name,
		Kind:       bundle.KindChart,
		Source:     source,
		Revision:   r.version,
		Descriptor: r.manifest,
	}, nil
}

// chartResult is what a repository-specific fetcher hands back to Chart.
type chartResult struct {
	version  string
	manifest ocispec.Descriptor
	// mirror is the mirror dialled for the repository (redacted), "" for none.
	mirror string
}

// chartSource returns the repository URL joined with the chart's name, without credentials:
// no user information and no query (where tokens are passed).
func chartSource(src spec.Chart) string {
	if u, err := url.Parse(src.Repository); err == nil {
		u.User, u.RawQuery, u.ForceQuery = nil, "", false
		return strings.TrimSuffix(u.String(), "/") + "/" + src.ChartName()
	}
	return strings.TrimSuffix(RedactURL(src.Repository), "/") + "/" + src.ChartName()
}

// chartLoad validates a chart archive with Helm's loader, checks that it is the chart and
// version the repository said it was, and that every dependency it lists is vendored.
func chartLoad(archive []byte, name, version string) (*chart.Chart, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		return nil, fmt.Errorf("load chart archive: %w", err)
	}
	if ch.Metadata == nil {
		return nil, fmt.Errorf("load chart archive: no Chart.yaml")
	}
	if ch.Metadata.Name != name || ch.Metadata.Version != version {
		return nil, fmt.Errorf("the archive holds chart %s version %s, the repository lists it as %s version %s", ch.Metadata.Name, ch.Metadata.Version, name, version)
	}
	if err := chartCheckDependencies(ch); err != nil {
		return nil, err
	}
	return ch, nil
}

// chartCheckDependencies fails unless every dependency listed in Chart.yaml is vendored in charts/,
// matched by name as Helm does before it installs a chart.
func chartCheckDependencies(ch *chart.Chart) error {
	var missing []string
	for _, d := range ch.Metadata.Dependencies {
		if d == nil {
			continue
		}
		if slices.ContainsFunc(ch.Dependencies(), func(sub *chart.Chart) bool { return sub.Name() == d.Name }) {
			continue
		}
		m := d.Name
		if d.Version != "" {
			m += " " + d.Version
		}
		if d.Repository != "" {
			m += " from " + d.Repository
		}
		missing = append(missing, m)
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("chart %s %s lists dependencies that are not vendored in its charts/ folder: %s; fix: vendor them with 'helm dependency build' and publish the chart again, since the disconnected cluster cannot download them",
		ch.Metadata.Name, ch.Metadata.Version, strings.Join(missing, "; "))
}

// chartMaxVersionsInError bounds how many versions an error lists.
const chartMaxVersionsInError = 20

// chartPickVersion chooses among a repository's versions as Helm's IndexFile.Get does: a version
// equal to want, or else the highest semver version that satisfies want as a range. Versions
// that are not semver are skipped; equal versions are broken by their text, so the choice does
// not depend on the order the repository listed them in.
func chartPickVersion(want string, versions []string) (string, error) {
	if slices.Contains(versions, want) {
		return want, nil
	}
	c, err := semver.NewConstraint(want)
	if err != nil {
		return "", fmt.Errorf("version %q is neither a version the repository has nor a semver range: %w", want, err)
	}
	type candidate struct {
		text string
		v    *semver.Version
	}
	var seen []candidate
	var best *candidate
	for _, s := range versions {
		v, err := semver.NewVersion(s)
		if err != nil {
			continue
		}
		cand := candidate{s, v}
		seen = append(seen, cand)
		if !c.Check(v) {
			continue
		}
		if best == nil || v.GreaterThan(best.v) || (v.Equal(best.v) && s > best.text) {
			best = &cand
		}
	}
	if best != nil {
		return best.text, nil
	}
	slices.SortFunc(seen, func(a, b candidate) int {
		if n := b.v.Compare(a.v); n != 0 {
			return n
		}
		return strings.Compare(b.text, a.text)
	})
	list := make([]string, 0, chartMaxVersionsInError)
	for i, s := range seen {
		if i == chartMaxVersionsInError {
			list = append(list, fmt.Sprintf("and %d more", len(seen)-i))
			break
		}
		list = append(list, s.text)
	}
	if len(list) == 0 {
		return "", fmt.Errorf("no version matches %q: the repository has no semver versions of this chart", want)
	}
	return "", fmt.Errorf("no version matches %q; versions seen: %s", want, strings.Join(list, ", "))
}
