package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"helm.sh/helm/v4/pkg/helmpath"
	"helm.sh/helm/v4/pkg/registry"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// chartMaxManifestSize is the largest chart manifest read: the bundle format's manifest limit.
const chartMaxManifestSize = 4 << 20

// chartTagRE matches a valid OCI tag.
var chartTagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// chartFromOCI resolves a chart in an OCI registry and copies its manifest's graph into dst.
func chartFromOCI(ctx context.Context, dst Store, src spec.Chart, o *Options) (_ chartResult, err error) {
	u, err := url.Parse(src.Repository)
	if err != nil {
		return chartResult{}, fmt.Errorf("repository URL is not valid: %w", errors.Unwrap(err))
	}
	if u.User != nil {
		return chartResult{}, errors.New("an oci:// repository URL cannot carry credentials; fix: remove them and log in with 'helm registry login' or 'docker login'")
	}
	name := src.ChartName()
	// The chart's repository, or the mirror o's upstreams send it to: the item's source stays
	// the original (Chart), and errors say which mirror was dialled.
	ref := strings.Trim(strings.TrimPrefix(src.Repository, "oci://"), "/") + "/" + name
	dial, _ := o.rewrite(ref)
	defer func() {
		if err != nil && dial != ref {
			err = fmt.Errorf("via mirror oci://%s: %w", dial, err)
		}
	}()
	r, err := dialRepository(ref, o)
	if err != nil {
		return chartResult{}, err
	}
	r.Client = &auth.Client{Client: &http.Client{Transport: retry.NewTransport(upstreamTransport())}, Cache: auth.NewCache(), Credential: chartRegistryCredential()}
	defer func() { err = chartAuthHint(err, r.Reference.Registry) }()

	desc, tag, err := chartResolveTag(ctx, r, src.Version)
	if err != nil {
		return chartResult{}, err
	}
	version := strings.ReplaceAll(tag, "_", "+")
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return chartResult{}, fmt.Errorf("tag %s is a %s, not a Helm chart's OCI image manifest", tag, desc.MediaType)
	}
	if desc.Size > chartMaxManifestSize {
		return chartResult{}, fmt.Errorf("tag %s: manifest of %d bytes is over the %d byte limit", tag, desc.Size, chartMaxManifestSize)
	}
	manifest, err := content.FetchAll(ctx, r, desc)
	if err != nil {
		return chartResult{}, fmt.Errorf("tag %s: fetch manifest %s: %w", tag, desc.Digest, err)
	}
	m, layer, err := chartLayer(manifest)
	if err != nil {
		return chartResult{}, fmt.Errorf("tag %s: manifest %s: %w", tag, desc.Digest, err)
	}
	if layer.Size > bundle.MaxChartSize {
		return chartResult{}, fmt.Errorf("tag %s: chart archive of %d bytes is over the %d byte chart limit (bundle.MaxChartSize, which sync applies too); refused", tag, layer.Size, bundle.MaxChartSize)
	}
	tgz, err := content.FetchAll(ctx, r, layer)
	if err != nil {
		return chartResult{}, fmt.Errorf("tag %s: fetch chart archive %s: %w", tag, layer.Digest, err)
	}
	ch, err := chartLoad(tgz, name, version)
	if err != nil {
		return chartResult{}, fmt.Errorf("tag %s: %w", tag, err)
	}

	// Only the chart's own config and layers are carried: not a subject the manifest names.
	b := newBudget("chart "+src.Name, o)
	opts := oras.CopyGraphOptions{Concurrency: 3, FindSuccessors: b.successors(func(_ context.Context, _ content.Fetcher, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if d.Digest != desc.Digest {
			return nil, nil
		}
		return append([]ocispec.Descriptor{m.Config}, m.Layers...), nil
	})}
	from := &chartPrefetched{ReadOnlyStorage: r, blobs: map[digest.Digest][]byte{desc.Digest: manifest, layer.Digest: tgz}}
	if err := oras.CopyGraph(ctx, from, chartStorage(dst), desc, opts); err != nil {
		return chartResult{}, fmt.Errorf("tag %s: copy %s: %w", tag, desc.Digest, err)
	}
	res := chartResult{
		version:  ch.Metadata.Version,
		manifest: ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
	}
	if dial != ref {
		res.mirror = "oci://" + dial
	}
	return res, nil
}

// chartResolveTag finds the tag for a version or range: the version's own tag if it exists
// (with Helm's "_" for "+"), or else the highest tag whose version satisfies the range.
func chartResolveTag(ctx context.Context, r *remote.Repository, want string) (ocispec.Descriptor, string, error) {
	if tag := strings.ReplaceAll(want, "+", "_"); chartTagRE.MatchString(tag) {
		desc, err := r.Resolve(ctx, tag)
		if err == nil {
			return desc, tag, nil
		}
		if !errors.Is(err, errdef.ErrNotFound) {
			return ocispec.Descriptor{}, "", fmt.Errorf("resolve tag %s: %w", tag, err)
		}
	}
	byVersion := map[string]string{}
	var versions []string
	err := listTags(ctx, r, func(tags []string) {
		for _, t := range tags {
			v := strings.ReplaceAll(t, "_", "+")
			if _, dup := byVersion[v]; !dup {
				byVersion[v] = t
				versions = append(versions, v)
			}
		}
	})
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("list tags: %w", err)
	}
	v, err := chartPickVersion(want, versions)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	tag := byVersion[v]
	desc, err := r.Resolve(ctx, tag)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("resolve tag %s: %w", tag, err)
	}
	return desc, tag, nil
}

// chartLayer checks that a manifest is a Helm chart's and nothing else, and returns it and its
// chart archive layer. A chart carries its config, its archive and at most one provenance
// file: a manifest with a subject or other layers (which would make the mirror copy whatever
// they name) is refused.
func chartLayer(manifest []byte) (ocispec.Manifest, ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return m, ocispec.Descriptor{}, fmt.Errorf("not an OCI image manifest: %w", err)
	}
	if err := bundle.CheckChartConfig(m); err != nil {
		return m, ocispec.Descriptor{}, err
	}
	if m.Subject != nil {
		return m, ocispec.Descriptor{}, fmt.Errorf("the chart manifest names a subject %s; a chart carries only its config, archive and provenance, so it is refused; fix: push the chart with 'helm push'", m.Subject.Digest)
	}
	if m.Config.Size > chartMaxManifestSize {
		return m, ocispec.Descriptor{}, fmt.Errorf("chart config of %d bytes is over the %d byte limit", m.Config.Size, chartMaxManifestSize)
	}
	provs := 0
	for _, l := range m.Layers {
		switch l.MediaType {
		case bundle.ChartLayerMediaType, bundle.ChartLegacyLayerMediaType:
		case bundle.ChartProvenanceMediaType:
			if provs++; provs > 1 || l.Size > chartMaxProvenanceSize {
				return m, ocispec.Descriptor{}, fmt.Errorf("provenance layer %s: a chart has at most one, of at most %d bytes; refused", l.Digest, chartMaxProvenanceSize)
			}
		default:
			return m, ocispec.Descriptor{}, fmt.Errorf("layer %s of media type %q is not a chart's (archive %s, provenance %s); a chart carries only its own layers, so it is refused", l.Digest, l.MediaType, bundle.ChartLayerMediaType, bundle.ChartProvenanceMediaType)
		}
	}
	layer, err := bundle.ChartLayer(m)
	return m, layer, err
}

// chartAuthHint adds what to do to an error that says the registry wants other credentials.
func chartAuthHint(err error, host string) error {
	var resp *errcode.ErrorResponse
	if errors.Is(err, auth.ErrBasicCredentialNotFound) || (errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden)) {
		return fmt.Errorf("%w; fix: log in to %s with 'helm registry login' or 'docker login', or correct the credentials stored for it", err, host)
	}
	return err
}

// chartPrefetched serves the blobs already read from a registry and fetches the rest from it.
type chartPrefetched struct {
	content.ReadOnlyStorage
	blobs map[digest.Digest][]byte
}

func (p *chartPrefetched) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if b, ok := p.blobs[d.Digest]; ok && int64(len(b)) == d.Size {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return p.ReadOnlyStorage.Fetch(ctx, d)
}

// chartStorage gives oras.CopyGraph the content.Storage it asks for. A Store that cannot Fetch
// gets a Fetch that fails; CopyGraph only checks and pushes into its destination.
func chartStorage(s Store) content.Storage {
	if cs, ok := s.(content.Storage); ok {
		return cs
	}
	return chartPushOnly{s}
}

// chartPushOnly is a Store without Fetch.
type chartPushOnly struct{ Store }

func (chartPushOnly) Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
	return nil, errors.New("the destination store cannot be read back")
}

// chartRegistryCredential finds a registry's credentials in Helm's registry configuration
// ($HELM_REGISTRY_CONFIG, by default registry/config.json in Helm's configuration folder),
// then in Docker's ($DOCKER_CONFIG/config.json or ~/.docker/config.json), the files being
// read on the first challenge. Credentials are only handed to oras-go's auth client.
func chartRegistryCredential() auth.CredentialFunc {
	var (
		once  sync.Once
		store credentials.Store
		err   error
	)
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		once.Do(func() { store, err = chartCredentialStore() })
		if err != nil {
			return auth.EmptyCredential, err
		}
		return credentials.Credential(store)(ctx, hostport)
	}
}

// chartCredentialStore opens Helm's registry configuration, falling back to Docker's.
func chartCredentialStore() (credentials.Store, error) {
	helmConfig := os.Getenv("HELM_REGISTRY_CONFIG")
	if helmConfig == "" {
		helmConfig = helmpath.ConfigPath(registry.CredentialsFileBasename)
	}
	helmStore, err := credentials.NewStore(helmConfig, credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("read Helm's registry configuration %s: %w", helmConfig, err)
	}
	dockerStore, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("read Docker's configuration: %w", err)
	}
	return credentials.NewStoreWithFallbacks(helmStore, dockerStore), nil
}
