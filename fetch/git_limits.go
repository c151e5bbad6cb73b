package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/ferry-gitops/ferry/bundle"
)

// Bounds of one Git source. The tree bounds are the ones sync applies to the tree it unpacks
// (bundle.MaxTreeEntries, bundle.MaxTreeSize), so what packs is what deploys.
const (
	// GitMaxFetchSize bounds the bytes a Git server may send over HTTP(S) for one source (ref
	// listing and packfile together), counted while they arrive.
	GitMaxFetchSize = 1 << 30
	// GitMaxRefsSize bounds the ref advertisement (the list of branches and tags), which
	// go-git holds in memory.
	GitMaxRefsSize = 8 << 20
	// GitMaxObjects bounds the objects reachable from the carried commit.
	GitMaxObjects = 2_000_000
	// GitMaxTreeDepth bounds how deeply folders nest in the tree.
	GitMaxTreeDepth = 128
)

// gitWire counts the bytes one source's Git server sends over HTTP.
type gitWire struct {
	max int64
	n   atomic.Int64
}

type gitWireKey struct{}

// gitWireContext returns ctx carrying w: the HTTP transport installed for go-git counts
// every response body of requests made with it.
func gitWireContext(ctx context.Context, w *gitWire) context.Context {
	return context.WithValue(ctx, gitWireKey{}, w)
}

var gitInstallOnce sync.Once

// gitInstallTransport makes go-git's http and https transports count response bytes against
// the limit carried by each request's context. Requests without one are not limited.
func gitInstallTransport() {
	gitInstallOnce.Do(func() {
		c := githttp.NewClient(&http.Client{Transport: gitCountingTransport{upstreamTransport()}})
		client.InstallProtocol("http", c)
		client.InstallProtocol("https", c)
	})
}

type gitCountingTransport struct{ rt http.RoundTripper }

func (t gitCountingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	w, _ := req.Context().Value(gitWireKey{}).(*gitWire)
	if w == nil {
		return resp, nil
	}
	body := &gitCountingBody{ReadCloser: resp.Body, w: w, max: -1}
	if req.Method == http.MethodGet {
		// GET is the ref advertisement (info/refs), which go-git keeps whole in memory.
		body.max = GitMaxRefsSize
	}
	if resp.ContentLength > 0 && (w.n.Load()+resp.ContentLength > w.max || body.max >= 0 && resp.ContentLength > body.max) {
		resp.Body.Close()
		body.n = resp.ContentLength
		return nil, body.over()
	}
	resp.Body = body
	return resp, nil
}

type gitCountingBody struct {
	io.ReadCloser
	w *gitWire
	// n counts this body; max bounds it (-1: only the source's total bounds it).
	n, max int64
}

func (b *gitCountingBody) over() error {
	if b.max >= 0 && b.n > b.max {
		return fmt.Errorf("the Git server's list of refs is over %d bytes (limit GitMaxRefsSize); the repository is refused", b.max)
	}
	return fmt.Errorf("the Git server sent more than %d bytes (limit GitMaxFetchSize); the repository is refused before it is stored; fix: carry a smaller repository or ask its owner why it is this large", b.w.max)
}

func (b *gitCountingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.w.n.Add(int64(n)) > b.w.max || b.max >= 0 && b.n > b.max {
		return n, b.over()
	}
	return n, err
}

// gitTreeBudget bounds the walk of a tree by running counters: entries and file bytes carried,
// and folder depth.
type gitTreeBudget struct {
	entries, bytes int64
	// sizes remembers blob sizes, so a blob listed many times is looked up once.
	sizes map[[20]byte]int64
}

func newGitTreeBudget() *gitTreeBudget { return &gitTreeBudget{sizes: map[[20]byte]int64{}} }

func (b *gitTreeBudget) addEntry() error {
	if b.entries++; b.entries > bundle.MaxTreeEntries {
		return fmt.Errorf("the tree has more than %d entries (limit MaxTreeEntries, which sync applies too); the repository is refused; fix: carry only the folders needed, with the source's paths field", bundle.MaxTreeEntries)
	}
	return nil
}

func (b *gitTreeBudget) addBytes(n int64) error {
	if b.bytes += n; b.bytes > bundle.MaxTreeSize {
		return fmt.Errorf("the tree's files hold more than %d bytes (limit MaxTreeSize, which sync applies too); the repository is refused; fix: carry only the folders needed, with the source's paths field", bundle.MaxTreeSize)
	}
	return nil
}
