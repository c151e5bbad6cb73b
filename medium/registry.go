package medium

import (
	"fmt"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// NewRepository returns a client of repository ref (host/path) with Docker's credentials, over plain HTTP if plainHTTP.
func NewRepository(ref string, plainHTTP bool) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", ref, err)
	}
	if repo.Reference.Reference != "" {
		return nil, fmt.Errorf("registry %s: name the repository without a tag or digest; the tag is given separately", ref)
	}
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("registry %s: Docker credentials: %w", ref, err)
	}
	client := &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache(), Credential: credentials.Credential(store)}
	client.SetUserAgent("ferry")
	repo.Client = client
	repo.PlainHTTP = plainHTTP
	// A registry's listings are bounded: a Link header that points back at itself (or a
	// listing that never ends) stops after MaxListPages pages, each response at most
	// MaxMetadataBytes.
	repo.TagListMaxPages = MaxListPages
	repo.ReferrerListMaxPages = MaxListPages
	repo.MaxMetadataBytes = MaxMetadataBytes
	return repo, nil
}

// Bounds of what a registry's listings may send: pages of a tag or referrers listing, bytes of
// one listing response or manifest fetched for metadata, and tags of one repository.
const (
	MaxListPages     = 100
	MaxMetadataBytes = 4 << 20
	MaxTags          = 10_000
)

// target names a tag of repo in errors: "registry host/repo:tag".
func target(repo *remote.Repository, tag string) string {
	return "registry " + repo.Reference.Registry + "/" + repo.Reference.Repository + ":" + tag
}

// checkTag checks that tag is a valid OCI tag.
func checkTag(repo *remote.Repository, tag string) error {
	ref := registry.Reference{Registry: repo.Reference.Registry, Repository: repo.Reference.Repository, Reference: tag}
	if err := ref.ValidateReferenceAsTag(); err != nil {
		return fmt.Errorf("%s: %w", target(repo, tag), err)
	}
	return nil
}

// newRepository returns a client of a registry location's repository, over plain HTTP if
// WithPlainHTTP names its host.
func newRepository(loc Location, o *options) (*remote.Repository, error) {
	return NewRepository(loc.repository, o.isPlainHTTP(loc.Host()))
}

// trackedRepository is newRepository with a client whose failures t notes.
func trackedRepository(loc Location, o *options, t *ioErrors) (*remote.Repository, error) {
	repo, err := newRepository(loc, o)
	if err != nil {
		return nil, err
	}
	repo.Client = trackedClient{c: repo.Client, t: t}
	return repo, nil
}
