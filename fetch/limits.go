package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ferry-gitops/ferry/bundle"
)

// Listing caps: a registry's tag list or referrers list is paged by Link headers, which a
// hostile registry can point back at the same page forever.
const (
	// maxListPages bounds the pages of one tag or referrers listing.
	maxListPages = 1000
	// maxTags bounds the tags of one repository that a semver policy chooses among.
	maxTags = 100_000
	// maxReferrers bounds the referrers (signatures, attestations, SBOMs) of one manifest.
	maxReferrers = 256
	// maxIndexSize bounds an HTTP chart repository's index.yaml.
	maxIndexSize = 32 << 20
)

// limits returns the bundle limits fetched content is held to: what sync would refuse is
// refused before it is read.
func (o *Options) limits() bundle.Limits {
	if o == nil {
		return bundle.Limits{}.WithDefaults()
	}
	return o.Limits.WithDefaults()
}

// budget holds one source's content to the bundle's limits while it is copied: every
// descriptor is checked before its content is fetched.
type budget struct {
	what  string // "image app (r.example/app)": names the source in errors
	l     bundle.Limits
	mu    sync.Mutex
	seen  map[digest.Digest]bool
	total int64
}

func newBudget(what string, o *Options) *budget {
	return &budget{what: what, l: o.limits(), seen: map[digest.Digest]bool{}}
}

// check counts d against the limits and fails if it breaks one.
func (b *budget) check(d ocispec.Descriptor) error {
	if d.Size < 0 {
		return fmt.Errorf("%s has a negative size %d", d.Digest, d.Size)
	}
	if isManifest(d.MediaType) && d.Size > b.l.MaxManifestSize {
		return fmt.Errorf("manifest %s of %d bytes is over the %d byte manifest limit (bundle limit MaxManifestSize); the upstream is refused", d.Digest, d.Size, b.l.MaxManifestSize)
	}
	if d.Size > b.l.MaxBlobSize {
		return fmt.Errorf("blob %s of %d bytes is over the %d byte blob limit (bundle limit MaxBlobSize); the upstream is refused", d.Digest, d.Size, b.l.MaxBlobSize)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[d.Digest] {
		return nil
	}
	b.seen[d.Digest] = true
	b.total += d.Size
	if len(b.seen) > b.l.MaxBlobs {
		return fmt.Errorf("more than %d blobs (bundle limit MaxBlobs); the upstream is refused", b.l.MaxBlobs)
	}
	if b.total > b.l.MaxTotalSize {
		return fmt.Errorf("more than %d bytes in all (bundle limit MaxTotalSize); the upstream is refused", b.l.MaxTotalSize)
	}
	return nil
}

// successors wraps a FindSuccessors function so that every node is checked before it is read
// and every child before it is copied.
func (b *budget) successors(find func(context.Context, content.Fetcher, ocispec.Descriptor) ([]ocispec.Descriptor, error)) func(context.Context, content.Fetcher, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return func(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if err := b.check(d); err != nil {
			return nil, err
		}
		children, err := find(ctx, f, d)
		if err != nil {
			return nil, err
		}
		for _, c := range children {
			if err := b.check(c); err != nil {
				return nil, err
			}
		}
		return children, nil
	}
}

// limitRepository bounds the listings of an upstream repository.
func limitRepository(r *remote.Repository) {
	r.TagListMaxPages = maxListPages
	r.ReferrerListMaxPages = maxListPages
}

// errTooManyTags stops a tag listing past maxTags.
var errTooManyTags = fmt.Errorf("the repository lists more than %d tags (listing limit); fix: pin a tag or digest instead of a semver range", maxTags)

// listTags calls fn with every tag of r, at most maxTags of them.
func listTags(ctx context.Context, r *remote.Repository, fn func(tags []string)) error {
	n := 0
	err := r.Tags(ctx, "", func(tags []string) error {
		if n += len(tags); n > maxTags {
			return errTooManyTags
		}
		fn(tags)
		return nil
	})
	if errors.Is(err, errTooManyTags) {
		return errTooManyTags
	}
	return pageLimitHint(err)
}

// pageLimitHint explains an error of a listing stopped at maxListPages.
func pageLimitHint(err error) error {
	if errors.Is(err, errdef.ErrTooManyPages) {
		return fmt.Errorf("%w (listing limit: %d pages); the registry's Link header may point back at itself, so the upstream is refused", err, maxListPages)
	}
	return err
}

// upstreamTransport is the HTTP transport of every upstream request: bounded dial, TLS and
// response-header waits. The whole fetch is bounded by the source's timeout (its context).
func upstreamTransport() *http.Transport {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          100,
		ForceAttemptHTTP2:     true,
	}
}

// readBounded reads a response body of at most max bytes: a Content-Length over it is refused
// before anything is read, and a body that runs past it is cut off and refused.
func readBounded(resp *http.Response, max int64, what, limit string) ([]byte, error) {
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%s is %d bytes, over the %d byte limit (%s)", what, resp.ContentLength, max, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over the %d byte limit (%s)", what, max, limit)
	}
	return b, nil
}

// RedactURL returns raw without user information and with every query value replaced, so a
// token in a URL (https://user:token@host/..., ?token=...) is never logged, shown or packed.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redactUnparsed(raw)
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactUnparsed drops what looks like user information and the query from a URL that
// url.Parse rejects.
func redactUnparsed(raw string) string {
	raw, _, _ = strings.Cut(raw, "?")
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	host, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndex(host, "@"); i >= 0 {
		host = host[i+1:]
	}
	if hasPath {
		return scheme + "://" + host + "/" + path
	}
	return scheme + "://" + host
}

// scrubError returns err with its text rewritten by the old, new pairs (a URL with its
// credentials, then the URL shown instead): libraries quote the URLs they were given.
func scrubError(err error, oldnew ...string) error {
	if err == nil {
		return nil
	}
	var pairs []string
	for i := 0; i+1 < len(oldnew); i += 2 {
		if oldnew[i] != "" && oldnew[i] != oldnew[i+1] {
			pairs = append(pairs, oldnew[i], oldnew[i+1])
		}
	}
	msg := strings.NewReplacer(pairs...).Replace(err.Error())
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

// scrubbed is an error whose text had secrets removed; errors.Is still sees the original.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
