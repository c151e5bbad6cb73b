package fetch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/ferry-gitops/ferry/spec"
)

// gitPackWindow is the delta window of the packfile encoder, git's default.
const gitPackWindow = 10

// gitListMax bounds how many names an error lists.
const gitListMax = 20

var gitCommitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// gitSource is one Git source being fetched.
type gitSource struct {
	spec.Git
	log *slog.Logger
	// maxFetch bounds the bytes the server may send.
	maxFetch int64
	// dial is the URL go-git is given: src.URL without HTTP credentials, or the mirror an
	// upstream sends it to.
	dial string
	// redacted is src.URL without userinfo or query values: what logs, errors and the bundle show.
	redacted string
	// mirror is dial redacted when it is a mirror's URL, else "": errors and logs name it
	// beside the original, the bundle never.
	mirror string
	auth   transport.AuthMethod
	// store holds the fetched objects in tmp, a temporary folder: on disk, not in memory.
	store storage.Storer
	tmp   string
	// resolvedRef is refs/heads/X or refs/tags/X, or "" for a commit ref.
	resolvedRef string
	commit      *object.Commit
}

// errorf returns an error that names the source.
func (s *gitSource) errorf(format string, args ...any) error {
	shown := s.redacted
	if s.mirror != "" {
		shown += " via mirror " + s.mirror
	}
	return fmt.Errorf("git %s (%s): "+format, append([]any{s.Name, shown}, args...)...)
}

// scrub removes src.URL's credentials from an error, and names what was dialled redacted.
func (s *gitSource) scrub(err error) error {
	dialShown := s.redacted
	if s.mirror != "" {
		dialShown = s.mirror
	}
	return scrubError(err, s.URL, s.redacted, s.dial, dialShown)
}

// setURL splits src.URL into what is dialled, what is shown and the credentials to send. An
// http(s) URL that one of o's upstreams matches is dialled at the mirror, without its query and
// with the credentials ~/.git-credentials holds for the mirror's host: those of src.URL are
// the original host's, never sent anywhere else.
func (s *gitSource) setURL(o *Options) error {
	s.redacted = "invalid URL"
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme == "" || u.Host == "" && u.Scheme != "file" {
		// The parse error quotes the URL, credentials and all: never show it.
		return s.errorf("URL is not a valid scheme://host/path URL")
	}
	user := u.User
	u.User = nil
	s.redacted = RedactURL(s.URL)
	s.dial = s.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		// ssh:// keeps its user name (the SSH login); file:// has none.
		return nil
	}
	s.dial = u.String()
	if mirror := o.rewriteURL(s.dial); mirror != s.dial {
		return s.setMirror(mirror)
	}
	if pass, ok := user.Password(); ok {
		s.auth = &githttp.BasicAuth{Username: user.Username(), Password: pass}
		return nil
	}
	cred, err := gitStoredCredential(u.Scheme, u.Host, user.Username())
	if err != nil {
		return s.errorf("%w", err)
	}
	if cred != nil {
		s.auth = cred
	}
	return nil
}

// setMirror makes s dial mirror, the URL an upstream sends src.URL to, with the credentials
// ~/.git-credentials holds for the mirror's scheme and host.
func (s *gitSource) setMirror(mirror string) error {
	s.mirror = RedactURL(mirror)
	m, err := url.Parse(mirror)
	if err != nil || (m.Scheme != "http" && m.Scheme != "https") || m.Host == "" {
		return s.errorf("the mirror's URL is not an http(s)://host/path URL; fix: correct the upstream's mirror")
	}
	if m.User != nil {
		return s.errorf("the mirror's URL carries credentials; fix: keep them in ~/.git-credentials")
	}
	s.dial = mirror
	cred, err := gitStoredCredential(m.Scheme, m.Host, "")
	if err != nil {
		return s.errorf("%w", err)
	}
	if cred != nil {
		s.auth = cred
	}
	return nil
}

// gitStoredCredential looks up scheme://host in ~/.git-credentials, the file of
// `git credential-store`: one scheme://user:password@host[/path] URL per line, first match wins.
// A user name given in the source's URL must match too. It returns nil when nothing matches.
func gitStoredCredential(scheme, host, user string) (*githttp.BasicAuth, error) {
	home := os.Getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return nil, nil
		}
	}
	path := filepath.Join(home, ".git-credentials")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := url.Parse(line)
		if err != nil || e.User == nil {
			continue // never report a line: it holds a secret
		}
		pass, ok := e.User.Password()
		if !ok || e.Scheme != scheme || !strings.EqualFold(e.Host, host) || user != "" && e.User.Username() != user {
			continue
		}
		return &githttp.BasicAuth{Username: e.User.Username(), Password: pass}, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return nil, nil
}

// clone lists the remote's refs, resolves the spec's ref, and fetches just what it needs into
// a temporary folder: the resolved ref's history, or every branch and tag for a commit not at
// a ref's tip. The bytes the server sends are counted as they arrive (GitMaxFetchSize).
func (s *gitSource) clone(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "ferry-git-fetch-")
	if err != nil {
		return s.errorf("temporary folder: %w", err)
	}
	s.tmp = tmp
	s.store = filesystem.NewStorage(osfs.New(tmp), cache.NewObjectLRUDefault())
	gitInstallTransport()
	ctx = gitWireContext(ctx, &gitWire{max: s.maxFetch})
	remote := git.NewRemote(s.store, &config.RemoteConfig{Name: "origin", URLs: []string{s.dial}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: s.auth, PeelingOption: git.AppendPeeled})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return s.errorf("%s not found: the repository is empty", gitRefString(s.Ref))
	}
	if err != nil {
		return s.errorf("list refs: %w", s.scrub(err))
	}
	var fetch []config.RefSpec
	want := plumbing.ZeroHash
	switch r := s.Ref; {
	case r.Branch != "":
		name := plumbing.NewBranchReferenceName(r.Branch)
		if gitFind(refs, name) == nil {
			return s.errorf("branch %q not found; branches: %s", r.Branch, gitList(gitNames(refs, "refs/heads/")))
		}
		s.resolvedRef = name.String()
	case r.Tag != "":
		name := plumbing.NewTagReferenceName(r.Tag)
		if gitFind(refs, name) == nil {
			return s.errorf("tag %q not found; tags: %s", r.Tag, gitList(gitNames(refs, "refs/tags/")))
		}
		s.resolvedRef = name.String()
	case r.SemVer != "":
		tag, err := gitHighestTag(gitNames(refs, "refs/tags/"), r.SemVer)
		if err != nil {
			return s.errorf("%w", err)
		}
		s.resolvedRef = plumbing.NewTagReferenceName(tag).String()
	case r.Commit != "":
		if !gitCommitRE.MatchString(r.Commit) {
			return s.errorf("commit %q is not a full 40-character commit hash", r.Commit)
		}
		want = plumbing.NewHash(r.Commit)
		// A ref whose tip is the commit is enough; otherwise every branch and tag.
		for _, ref := range refs {
			peeled := strings.TrimSuffix(ref.Name().String(), "^{}")
			if ref.Type() == plumbing.HashReference && ref.Hash() == want && (strings.HasPrefix(peeled, "refs/heads/") || strings.HasPrefix(peeled, "refs/tags/")) {
				fetch = []config.RefSpec{config.RefSpec("+" + peeled + ":" + peeled)}
				break
			}
		}
		if fetch == nil {
			fetch = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
		}
	default:
		return s.errorf("no ref: set one of branch, tag, semver or commit")
	}
	if s.resolvedRef != "" {
		fetch = []config.RefSpec{config.RefSpec("+" + s.resolvedRef + ":" + s.resolvedRef)}
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: fetch, Auth: s.auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return s.errorf("fetch %s: %w", gitRefString(s.Ref), s.scrub(err))
	}
	if s.resolvedRef != "" {
		ref, err := s.store.Reference(plumbing.ReferenceName(s.resolvedRef))
		if err != nil {
			return s.errorf("fetch %s: %w", s.resolvedRef, err)
		}
		want = ref.Hash()
	}
	if s.commit, err = s.peel(want); err != nil {
		return err
	}
	return nil
}

// close closes the store's open packfiles and removes the fetched objects.
func (s *gitSource) close() {
	if c, ok := s.store.(interface{ Close() error }); ok {
		c.Close()
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// peel follows annotated tags from h to the commit they name.
func (s *gitSource) peel(h plumbing.Hash) (*object.Commit, error) {
	what := s.resolvedRef
	if what == "" {
		what = "commit " + h.String()
	}
	for range 16 {
		o, err := s.store.EncodedObject(plumbing.AnyObject, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) && s.resolvedRef == "" {
			return nil, s.errorf("commit %s not found in any branch or tag", h)
		}
		if err != nil {
			return nil, s.errorf("%s: %w", what, err)
		}
		switch o.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(s.store, o)
			if err != nil {
				return nil, s.errorf("%s: %w", what, err)
			}
			return c, nil
		case plumbing.TagObject:
			t, err := object.DecodeTag(s.store, o)
			if err != nil {
				return nil, s.errorf("%s: %w", what, err)
			}
			h = t.Target
		default:
			return nil, s.errorf("%s names a %s, not a commit", what, o.Type())
		}
	}
	return nil, s.errorf("%s: annotated tags nested too deep", what)
}

// encodePack encodes every object reachable from the commit as a packfile. The objects are
// given to the encoder sorted by hash, so one commit always gives the same bytes.
func (s *gitSource) encodePack(ctx context.Context) ([]byte, error) {
	hashes, err := revlist.Objects(s.store, []plumbing.Hash{s.commit.Hash}, nil)
	if err != nil {
		return nil, err
	}
	if len(hashes) > GitMaxObjects {
		return nil, fmt.Errorf("%d objects are reachable from the commit, over the %d object limit (GitMaxObjects); the repository is refused", len(hashes), GitMaxObjects)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(hashes, func(a, b plumbing.Hash) int { return bytes.Compare(a[:], b[:]) })
	var buf bytes.Buffer
	if _, err := packfile.NewEncoder(&buf, s.store, false).Encode(hashes, gitPackWindow); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gitFind returns the ref named name, or nil.
func gitFind(refs []*plumbing.Reference, name plumbing.ReferenceName) *plumbing.Reference {
	for _, r := range refs {
		if r.Name() == name {
			return r
		}
	}
	return nil
}

// gitNames returns the sorted short names of the refs under prefix ("refs/heads/").
func gitNames(refs []*plumbing.Reference, prefix string) []string {
	var names []string
	for _, r := range refs {
		n := r.Name().String()
		if short, ok := strings.CutPrefix(n, prefix); ok && !strings.HasSuffix(n, "^{}") {
			names = append(names, short)
		}
	}
	slices.Sort(names)
	return names
}

// gitList joins names for an error message, at most gitListMax of them.
func gitList(names []string) string {
	switch {
	case len(names) == 0:
		return "none"
	case len(names) > gitListMax:
		return strings.Join(names[:gitListMax], ", ") + fmt.Sprintf(" and %d more", len(names)-gitListMax)
	}
	return strings.Join(names, ", ")
}

// gitHighestTag returns the tag with the highest version matching the range. Tags are
// semantic versions with an optional leading "v"; other tags are ignored. The error of a range
// nothing matches lists the versions, highest first.
func gitHighestTag(tags []string, rng string) (string, error) {
	c, err := semver.NewConstraint(rng)
	if err != nil {
		return "", fmt.Errorf("semver %q is not a range: %w", rng, err)
	}
	type tagged struct {
		tag string
		v   *semver.Version
	}
	var all []tagged
	for _, t := range tags {
		v, err := semver.StrictNewVersion(strings.TrimPrefix(t, "v"))
		if err == nil {
			all = append(all, tagged{t, v})
		}
	}
	// Highest version first; of two tags of one version ("1.0.0", "v1.0.0") the first by name.
	slices.SortFunc(all, func(a, b tagged) int {
		if n := b.v.Compare(a.v); n != 0 {
			return n
		}
		return strings.Compare(a.tag, b.tag)
	})
	for _, t := range all {
		if c.Check(t.v) {
			return t.tag, nil
		}
	}
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = t.tag
	}
	return "", fmt.Errorf("no tag matches semver %q; semver tags: %s", rng, gitList(names))
}
