package fetch

import (
	"context"
	"io"
	"log/slog"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
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
