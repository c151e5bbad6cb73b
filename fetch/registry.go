package fetch

import (
	"fmt"
	"net/http"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// repository opens an upstream repository ("host/path"), or the mirror o's upstreams send it
// to, with credentials from Docker's config (~/.docker/config.json and its helpers) for the
// host dialled.
func repository(ref string, o *Options) (*remote.Repository, error) {
	repo, err := dialRepository(ref, o)
	if err != nil {
		return nil, err
	}
	client := &auth.Client{Client: &http.Client{Transport: retry.NewTransport(upstreamTransport())}, Cache: auth.NewCache()}
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("read Docker credentials: %w", err)
	}
	client.Credential = credentials.Credential(store)
	repo.Client = client
	return repo, nil
}

// dialRepository returns the repository to dial for ref ("host/path"), without a client: ref
// itself, or its mirror by o's upstreams. It is reached over plain HTTP when the mirror is
// written http:// or o lists the host dialled. repo.Reference names what is dialled, so
// callers keep ref for what the item records.
func dialRepository(ref string, o *Options) (*remote.Repository, error) {
	dial, plain := o.rewrite(ref)
	repo, err := remote.NewRepository(dial)
	if err != nil {
		return nil, err
	}
	repo.PlainHTTP = plain || o.plainHTTP(repo.Reference.Registry)
	limitRepository(repo)
	return repo, nil
}
