package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/getter"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// chartMaxProvenanceSize bounds a chart's .prov file; real ones are a few kilobytes.
const chartMaxProvenanceSize = 1 << 20

// chartProvenanceHeader starts every Helm provenance file: a PGP clear-signed message.
const chartProvenanceHeader = "-----BEGIN PGP SIGNED MESSAGE-----"

// chartFromHTTP downloads a chart from an HTTP(S) chart repository and publishes it in dst.
// index.yaml and the archive are each read through a bound (maxIndexSize, bundle.MaxChartSize)
// that a Content-Length over it fails before anything is read, and the archive is downloaded
// only from the repository's own host or one the spec allows.
//
// Each URL (index.yaml, the archive, its provenance) is dialled at the mirror o's upstreams
// send it to, if any; what is checked against the repository's host and the allowed hosts is
// the URL before rewriting, and the repository's credentials are sent only to its own host.
// An index.yaml served by a mirror may also send the download to the mirror's own host, as
// Artifactory and Nexus rewrite it to.
func chartFromHTTP(ctx context.Context, dst Store, src spec.Chart, o *Options) (chartResult, error) {
	repoURL, user, pass, err := chartSplitCredentials(src.Repository)
	if err != nil {
		return chartResult{}, err
	}
	tr := chartTransport(ctx)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	indexURL, err := repo.ResolveReferenceURL(repoURL, "index.yaml")
	if err != nil {
		return chartResult{}, fmt.Errorf("index.yaml: %w", err)
	}
	indexDial := o.rewriteURL(indexURL)
	indexData, err := chartGet(ctx, client, indexDial, repoURL, user, pass, maxIndexSize, "index.yaml", "limit of an index.yaml")
	if err != nil {
		return chartResult{}, fmt.Errorf("download index.yaml%s: %w", viaMirror(indexURL, indexDial), err)
	}
	cache, err := os.MkdirTemp("", "ferry-chart-index-")
	if err != nil {
		return chartResult{}, fmt.Errorf("index cache: %w", err)
	}
	defer os.RemoveAll(cache)
	indexPath := filepath.Join(cache, "index.yaml")
	if err := os.WriteFile(indexPath, indexData, 0o600); err != nil {
		return chartResult{}, fmt.Errorf("index cache: %w", err)
	}
	indexData = nil
	index, err := repo.LoadIndexFile(indexPath)
	if err != nil {
		return chartResult{}, fmt.Errorf("read index.yaml: %w", err)
	}

	name := src.ChartName()
	entries := index.Entries[name]
	if len(entries) == 0 {
		return chartResult{}, fmt.Errorf("the repository's index.yaml has no chart named %q", name)
	}
	versions := make([]string, 0, len(entries))
	for _, e := range entries {
		if e != nil && e.Metadata != nil {
			versions = append(versions, e.Version)
		}
	}
	version, err := chartPickVersion(src.Version, versions)
	if err != nil {
		return chartResult{}, err
	}
	cv := entries[slices.IndexFunc(entries, func(e *repo.ChartVersion) bool { return e != nil && e.Metadata != nil && e.Version == version })]
	if len(cv.URLs) == 0 {
		return chartResult{}, fmt.Errorf("version %s: index.yaml gives no URL to download it from", version)
	}
	chartURL, err := repo.ResolveReferenceURL(repoURL, cv.URLs[0])
	if err != nil {
		return chartResult{}, fmt.Errorf("version %s: %w", version, err)
	}
	if !chartOnMirror(indexURL, indexDial, chartURL) {
		if err := chartCheckHost(repoURL, chartURL, src.AllowedHosts); err != nil {
			return chartResult{}, fmt.Errorf("version %s: %w", version, err)
		}
	}
	chartDial := o.rewriteURL(chartURL)
	shown := RedactURL(chartURL) + viaMirror(chartURL, chartDial)
	archive, err := chartGet(ctx, client, chartDial, repoURL, user, pass, bundle.MaxChartSize, "chart archive "+RedactURL(chartURL), "bundle.MaxChartSize, which sync applies too")
	if err != nil {
		return chartResult{}, fmt.Errorf("version %s: download %s: %w", version, shown, err)
	}
	sum := sha256.Sum256(archive)
	got := hex.EncodeToString(sum[:])
	if cv.Digest != "" {
		if want := strings.TrimPrefix(strings.ToLower(cv.Digest), "sha256:"); want != got {
			return chartResult{}, fmt.Errorf("version %s: %s hashes to sha256:%s, index.yaml says sha256:%s; fix: the repository's index and archive disagree, ask its owner to re-index it", version, shown, got, want)
		}
	}
	ch, err := chartLoad(archive, name, version)
	if err != nil {
		return chartResult{}, fmt.Errorf("version %s: %w", version, err)
	}
	prov, err := chartFetchProvenance(ctx, tr, chartURL, repoURL, user, pass, got, o)
	if err != nil {
		return chartResult{}, fmt.Errorf("version %s: %w", version, err)
	}
	desc, err := chartPublish(ctx, dst, archive, prov, ch.Metadata)
	if err != nil {
		return chartResult{}, fmt.Errorf("version %s: %w", version, err)
	}
	r := chartResult{version: ch.Metadata.Version, manifest: desc}
	if indexDial != indexURL {
		r.mirror = RedactURL(indexDial)
	}
	return r, nil
}

// chartGet downloads rawURL, at most max bytes of it, sending the repository's credentials
// only to the repository's own scheme and host. what and limit name the body and its bound in
// errors; URLs in errors are redacted.
func chartGet(ctx context.Context, client *http.Client, rawURL, repoURL, user, pass string, max int64, what, limit string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, http.NoBody)
	if err != nil {
		return nil, scrubError(err, rawURL, RedactURL(rawURL))
	}
	if base, err := url.Parse(repoURL); err == nil && user != "" && base.Scheme == req.URL.Scheme && base.Host == req.URL.Host {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("User-Agent", "ferry-mirror")
	resp, err := client.Do(req)
	if err != nil {
		return nil, chartCtxErr(ctx, scrubError(err, rawURL, RedactURL(rawURL)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", RedactURL(rawURL), resp.Status)
	}
	b, err := readBounded(resp, max, what, limit)
	if err != nil {
		return nil, chartCtxErr(ctx, err)
	}
	return b, nil
}

// chartOnMirror says whether chartURL, as an index.yaml gives it, is on the host of the mirror
// that served the index (indexDial, the mirror's URL for indexURL): a mirror may rewrite the
// download URLs of the index it serves to point at itself. The mirror is trusted as the
// repository is.
func chartOnMirror(indexURL, indexDial, chartURL string) bool {
	if indexDial == indexURL {
		return false
	}
	m, err := url.Parse(indexDial)
	if err != nil {
		return false
	}
	u, err := url.Parse(chartURL)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, m.Scheme) && strings.EqualFold(u.Host, m.Host)
}

// chartCheckHost fails unless chartURL is on the repository's own host, or on a host the spec
// allows: a hostile index.yaml cannot send the mirror to fetch from anywhere else.
func chartCheckHost(repoURL, chartURL string, allowed []string) error {
	base, err := url.Parse(repoURL)
	if err != nil {
		return err
	}
	u, err := url.Parse(chartURL)
	if err != nil {
		return err
	}
	if strings.EqualFold(u.Host, base.Host) {
		return nil
	}
	for _, h := range allowed {
		if strings.EqualFold(h, u.Host) || strings.EqualFold(h, u.Hostname()) && u.Port() == "" {
			return nil
		}
	}
	return fmt.Errorf("index.yaml sends the download to %s, which is not the repository's host %s; refused; fix: if that host is the repository's own download host, list it in the chart's allowedHosts", RedactURL(chartURL), base.Host)
}

// chartSplitCredentials returns a repository URL without its user information, and that user
// information, which Helm's getter then sends only to the repository's own host.
func chartSplitCredentials(raw string) (clean, user, pass string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("repository URL is not valid: %w", errors.Unwrap(err))
	}
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
		u.User = nil
	}
	return u.String(), user, pass, nil
}

// chartFetchProvenance downloads the .prov file published beside a chart archive, if there is
// one. A repository without one answers 404 (410, or 403 for object stores that hide missing
// keys); a file that is not a PGP-signed message is not a provenance file. A provenance file
// must name the archive's digest. chartURL is the archive's URL before o's upstreams rewrite
// it; the provenance file's is rewritten in turn.
func chartFetchProvenance(ctx context.Context, tr *http.Transport, chartURL, repoURL, user, pass, archiveSum string, o *Options) ([]byte, error) {
	orig, err := url.Parse(chartURL)
	if err != nil {
		return nil, err
	}
	orig.Path += ".prov"
	if orig.RawPath != "" {
		orig.RawPath += ".prov"
	}
	dial := o.rewriteURL(orig.String())
	shown := RedactURL(orig.String()) + viaMirror(orig.String(), dial)
	u, err := url.Parse(dial)
	if err != nil {
		return nil, fmt.Errorf("provenance %s: %w", shown, errors.Unwrap(err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return nil, err
	}
	if base, err := url.Parse(repoURL); err == nil && user != "" && base.Scheme == u.Scheme && base.Host == u.Host {
		req.SetBasicAuth(user, pass)
	}
	client := &http.Client{Transport: tr, Timeout: getter.DefaultHTTPTimeout * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download provenance %s: %w", shown, chartCtxErr(ctx, err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return nil, nil
	default:
		return nil, fmt.Errorf("download provenance %s: %s", shown, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, chartMaxProvenanceSize+1))
	if err != nil {
		return nil, fmt.Errorf("download provenance %s: %w", shown, chartCtxErr(ctx, err))
	}
	if len(b) > chartMaxProvenanceSize {
		return nil, fmt.Errorf("provenance %s is larger than %d bytes", shown, chartMaxProvenanceSize)
	}
	if !bytes.HasPrefix(b, []byte(chartProvenanceHeader)) {
		return nil, nil
	}
	if !bytes.Contains(b, []byte("sha256:"+archiveSum)) {
		return nil, fmt.Errorf("provenance %s does not name the archive's digest sha256:%s; fix: the repository's .prov file belongs to another archive, ask its owner to sign the chart again", shown, archiveSum)
	}
	return b, nil
}

// chartPublish pushes a chart to dst as `helm push` lays it out in a registry: the chart's
// metadata as the config, the archive (and provenance) as layers sorted by digest, and Helm's
// annotations on the manifest, without a creation time. It returns the manifest's descriptor.
func chartPublish(ctx context.Context, dst Store, archive, prov []byte, meta *chart.Metadata) (ocispec.Descriptor, error) {
	config, err := json.Marshal(meta)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("chart metadata: %w", err)
	}
	configDesc := content.NewDescriptorFromBytes(bundle.ChartConfigMediaType, config)
	blobs := map[digest.Digest][]byte{configDesc.Digest: config}
	layers := []ocispec.Descriptor{content.NewDescriptorFromBytes(bundle.ChartLayerMediaType, archive)}
	blobs[layers[0].Digest] = archive
	if prov != nil {
		d := content.NewDescriptorFromBytes(bundle.ChartProvenanceMediaType, prov)
		layers = append(layers, d)
		blobs[d.Digest] = prov
	}
	slices.SortFunc(layers, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		Config:      configDesc,
		Layers:      layers,
		Annotations: chartAnnotations(meta),
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("chart manifest: %w", err)
	}
	manifestDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	for _, d := range append([]ocispec.Descriptor{configDesc}, layers...) {
		if err := chartPushBlob(ctx, dst, d, blobs[d.Digest]); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if err := chartPushBlob(ctx, dst, manifestDesc, manifest); err != nil {
		return ocispec.Descriptor{}, err
	}
	return manifestDesc, nil
}

// chartAnnotations returns the manifest annotations Helm's registry client writes for a chart,
// less any creation time: description, title, version, URL, source and authors from Chart.yaml,
// then the chart's own annotations, which never replace the title or the version.
func chartAnnotations(meta *chart.Metadata) map[string]string {
	a := map[string]string{}
	add := func(k, v string) {
		if strings.TrimSpace(v) != "" {
			a[k] = v
		}
	}
	add(ocispec.AnnotationDescription, meta.Description)
	add(ocispec.AnnotationTitle, meta.Name)
	add(ocispec.AnnotationVersion, meta.Version)
	add(ocispec.AnnotationURL, meta.Home)
	if len(meta.Sources) > 0 {
		add(ocispec.AnnotationSource, meta.Sources[0])
	}
	if len(meta.Maintainers) > 0 {
		var sb strings.Builder
		for i, m := range meta.Maintainers {
			if m == nil {
				continue
			}
			sb.WriteString(m.Name)
			if m.Email != "" {
				sb.WriteString(" (" + m.Email + ")")
			}
			if i < len(meta.Maintainers)-1 {
				sb.WriteString(", ")
			}
		}
		add(ocispec.AnnotationAuthors, sb.String())
	}
	for k, v := range meta.Annotations {
		if k != ocispec.AnnotationTitle && k != ocispec.AnnotationVersion {
			a[k] = v
		}
	}
	delete(a, ocispec.AnnotationCreated)
	return a
}

// chartPushBlob pushes data to dst unless dst already holds it.
func chartPushBlob(ctx context.Context, dst Store, d ocispec.Descriptor, data []byte) error {
	if ok, err := dst.Exists(ctx, d); err != nil {
		return fmt.Errorf("store blob %s: %w", d.Digest, err)
	} else if ok {
		return nil
	}
	if err := dst.Push(ctx, d, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("store blob %s: %w", d.Digest, err)
	}
	return nil
}

// chartTransport returns an HTTP transport, as Helm's getter would use, whose connections
// close when ctx ends: Helm's getter takes no context, so this is how a cancelled fetch stops.
func chartTransport(ctx context.Context) *http.Transport {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DisableCompression:    true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		DialContext: func(dctx context.Context, network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithCancel(dctx)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			c, err := d.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &chartConn{Conn: c, stop: context.AfterFunc(ctx, func() { c.Close() })}, nil
		},
	}
}

// chartConn is a connection closed when its context ends.
type chartConn struct {
	net.Conn
	stop func() bool
}

func (c *chartConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// chartCtxErr puts ctx's error in front of err when ctx has ended, so errors.Is finds it.
func chartCtxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %v", cerr, err)
	}
	return err
}
