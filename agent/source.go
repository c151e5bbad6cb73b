package agent

import (
	"fmt"

	"github.com/ferry-gitops/ferry/medium"
)

// source is one place bundles arrive at, as the configuration names it: a location medium
// lists, and the options that reach it.
type source struct {
	// index is the source's index in the configuration.
	index int
	loc   medium.Location
	opts  []medium.Option
	// name names the source in logs and metrics: "dir DIR", "s3://bucket/prefix at
	// host:port", "registry host/path".
	name string
}

func (s *source) String() string { return s.name }

// newSource prepares a source's location and clients (none of which makes a request yet).
func newSource(index int, cfg SourceConfig) (*source, error) {
	switch {
	case cfg.S3 != nil:
		client, err := medium.NewS3Client(cfg.S3.Endpoint, cfg.S3.Insecure)
		if err != nil {
			return nil, fmt.Errorf("sources[%d].s3: %w", index, err)
		}
		loc := medium.S3Prefix(cfg.S3.Bucket, cfg.S3.Prefix)
		return &source{index: index, loc: loc, name: loc.String() + " at " + cfg.S3.Endpoint,
			opts: []medium.Option{medium.WithS3Endpoint(cfg.S3.Endpoint, cfg.S3.Insecure), medium.WithS3Client(client)}}, nil
	case cfg.Registry != nil:
		if _, err := medium.NewRepository(cfg.Registry.Repository, cfg.Registry.PlainHTTP); err != nil {
			return nil, fmt.Errorf("sources[%d].registry: %w", index, err)
		}
		loc := medium.Repository(cfg.Registry.Repository)
		s := &source{index: index, loc: loc, name: "registry " + cfg.Registry.Repository}
		if cfg.Registry.PlainHTTP {
			s.opts = append(s.opts, medium.WithPlainHTTP(loc.Host()))
		}
		return s, nil
	}
	loc := medium.DropDir(cfg.Dir)
	return &source{index: index, loc: loc, name: loc.String()}, nil
}

// candidate is one bundle a source offers.
type candidate struct {
	medium.Candidate
	// source is the source's index in the configuration.
	source int
}
