package medium

import (
	"slices"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ferry-gitops/ferry/bundle"
)

// Option says how a verb reaches a medium and what it does with the bundle it reads.
type Option func(*options)

type options struct {
	s3Endpoint string
	s3Insecure bool
	s3Client   *minio.Client
	plainHTTP  []string
	read       []bundle.ReadOption
	limits     bundle.Limits
	maxListed  int
	stall      time.Duration
	// progress feeds a stall watch (ReadRoot's own reader options).
	progress []bundle.ReadOption
}

func makeOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithS3Endpoint is the S3-compatible endpoint (host:port) of s3:// locations, over plain HTTP
// when insecure. Credentials come from the environment (see NewS3Client).
func WithS3Endpoint(endpoint string, insecure bool) Option {
	return func(o *options) { o.s3Endpoint, o.s3Insecure = endpoint, insecure }
}

// WithStallTimeout stops a read (Read, ReadRoot) once the medium sent no byte of the bundle for
// d: the read fails with an *Error wrapping ErrStalled, the medium's failure, not a verdict.
// 0 (the default): no such bound, only ctx's.
func WithStallTimeout(d time.Duration) Option { return func(o *options) { o.stall = d } }

// WithMaxListed bounds the objects a bucket's listing may return (default MaxListedObjects).
func WithMaxListed(n int) Option { return func(o *options) { o.maxListed = n } }

// WithS3Client uses client for s3:// locations instead of one made from WithS3Endpoint.
func WithS3Client(client *minio.Client) Option { return func(o *options) { o.s3Client = client } }

// WithPlainHTTP reaches the registry hosts (host:port) given over plain HTTP.
func WithPlainHTTP(hosts ...string) Option {
	return func(o *options) { o.plainHTTP = append(o.plainHTTP, hosts...) }
}

// WithReadOptions passes options to the bundle reader of Read and Write: limits, a delta's
// base, a visitor, an observer.
func WithReadOptions(opts ...bundle.ReadOption) Option {
	return func(o *options) { o.read = append(o.read, opts...) }
}

// WithLimits bounds what List and ReadRoot read (part lists, roots); zero fields keep the
// defaults. Read takes its limits through WithReadOptions(bundle.WithLimits(...)).
func WithLimits(l bundle.Limits) Option { return func(o *options) { o.limits = l } }

func (o *options) s3() (*minio.Client, error) {
	if o.s3Client != nil {
		return o.s3Client, nil
	}
	return NewS3Client(o.s3Endpoint, o.s3Insecure)
}

func (o *options) isPlainHTTP(host string) bool { return slices.Contains(o.plainHTTP, host) }
