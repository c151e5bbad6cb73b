package cache

import "github.com/opencontainers/go-digest"

// State is the anti-rollback state: the last bundle the cache accepted. It lives in the cache
// (state.json, written last in a commit: its rename is the commit point) where no bundle can
// write it. verify decides a new bundle against it (Policy.Begin takes its two fields) and the
// cache stores the new one only once that bundle is committed whole.
//
// AgentVersion is the highest Ferry agent image version (semver) any accepted bundle carried
// ("" until one did; a state file written before it existed has none): a bundle carrying an
// older agent image is refused (verify.Run.AgentVersions, check agent-rollback).
type State struct {
	Sequence     uint64        `json:"sequence"`
	Root         digest.Digest `json:"root"`
	AgentVersion string        `json:"agentVersion,omitempty"`
}
