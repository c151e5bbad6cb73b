package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/internal/cli"
	"github.com/ferry-gitops/ferry/medium"
)

// s3Flags are the flags that name a bucket.
type s3Flags struct {
	url, endpoint, partSize string
	insecure                bool
}

func (s *s3Flags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.url, "s3", "", "write the bundle to this bucket and prefix (s3://bucket/prefix); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials")
	f.StringVar(&s.endpoint, "s3-endpoint", "s3.amazonaws.com", "S3-compatible endpoint (host:port)")
	f.BoolVar(&s.insecure, "s3-insecure", false, "reach the S3 endpoint over plain HTTP")
	f.StringVar(&s.partSize, "s3-part-size", "1GiB", "size of the parts written to the bucket")
}

// location is where --s3 writes the bundle named name (its part list is NAME.parts.json), and
// the option that reaches the endpoint.
func (s *s3Flags) location(name string) (medium.Location, medium.Option, error) {
	u, err := url.Parse(s.url)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return medium.Location{}, nil, fmt.Errorf("--s3 %q: want s3://bucket/prefix", s.url)
	}
	size, err := cli.ParseSize(s.partSize)
	if err != nil {
		return medium.Location{}, nil, fmt.Errorf("--s3-part-size: %w", err)
	}
	return medium.S3(u.Host, strings.Trim(u.Path, "/"), name).Split(size), medium.WithS3Endpoint(s.endpoint, s.insecure), nil
}

// logger writes structured logs to stderr, at debug level with --verbose.
func logger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelWarn
	if v, _ := cmd.Flags().GetBool("verbose"); v {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
}
