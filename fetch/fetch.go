package fetch

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/spec"
)

// Store receives fetched content: the three verbs of oras-go's content.Storage, so oras-go can
// copy graphs into it. *bundle.Layout satisfies it.
type Store interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error)
	Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error
}

// Options are shared by every fetcher. The zero value is usable.
type Options struct {
	// PlainHTTP lists registry hosts (host:port) reached over plain HTTP instead of HTTPS,
	// such as a registry on loopback.
	PlainHTTP []string
	// Logger receives one line per resolved source; nil discards.
	Logger *slog.Logger
	// Limits are the bundle limits fetched content is held to (zero fields: the defaults,
	// the limits sync applies).
	Limits bundle.Limits
	// GitMaxFetchSize bounds the bytes one Git source's server may send (0: GitMaxFetchSize).
	GitMaxFetchSize int64
	// Upstreams send requests for an upstream to the mirror the site reaches instead, by the
	// longest matching prefix (spec.Rewrite): Git and HTTP chart repository URLs, chart
	// downloads and provenance files an index.yaml names, oci:// charts and images. Only the
	// dialling changes: the item records the original identity (its Source, a Git config's
	// URL), never the mirror's address, and checks such as a chart's allowedHosts are made
	// against the original URLs.
	Upstreams []spec.Upstream
}

// rewrite returns the address to dial for an upstream URL or image reference u, and whether
// the mirror of a registry is reached over plain HTTP (spec.Rewrite).
func (o *Options) rewrite(u string) (string, bool) {
	if o == nil || len(o.Upstreams) == 0 {
		return u, false
	}
	return spec.Rewrite(o.Upstreams, u)
}

// rewriteURL is rewrite for an http(s) URL. A URL sent to a mirror loses its query, where the
// original's tokens travel (?token=…): the original's credentials never reach a mirror, as
// its user information does not either.
func (o *Options) rewriteURL(u string) string {
	dial, _ := o.rewrite(u)
	if dial == u {
		return u
	}
	if p, err := url.Parse(dial); err == nil && (p.RawQuery != "" || p.ForceQuery) {
		p.RawQuery, p.ForceQuery = "", false
		return p.String()
	}
	return dial
}

// viaMirror returns " via mirror <dial>" (a URL redacted) when dial differs from orig, for
// errors and logs.
func viaMirror(orig, dial string) string {
	if dial == orig {
		return ""
	}
	if strings.Contains(dial, "://") {
		dial = RedactURL(dial)
	}
	return " via mirror " + dial
}

func (o *Options) plainHTTP(host string) bool {
	if o == nil {
		return false
	}
	for _, h := range o.PlainHTTP {
		if h == host {
			return true
		}
	}
	return false
}

func (o *Options) logger() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
