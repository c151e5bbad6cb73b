package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/errgroup"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/discover"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/spec"
)

// errSourceTimeout is the cause of a source's context when its timeout passes.
var errSourceTimeout = errors.New("the source's timeout passed")

// Options say what to pack and how.
type Options struct {
	Spec *spec.Spec
	// Dir is the folder the bundle layout is built in; it is created if missing.
	Dir string
	// Sequence is the bundle's sequence number; 0 takes the creation time in Unix seconds,
	// which grows from one pack to the next on a host with a sane clock.
	Sequence uint64
	// Previous is the root digest of the bundle packed before this one, if known.
	Previous digest.Digest
	// Signer signs the root; nil packs an unsigned bundle, which sync refuses.
	Signer signature.Signer
	// KeyStatements are signed key statements (verify.SignedKeyStatement, from 'mirror
	// key-statement') the bundle carries as attachments, for agents to rotate their keys.
	KeyStatements [][]byte
	// Fetch configures the upstream fetchers.
	Fetch *fetch.Options
	// Concurrency bounds the sources fetched at once (default 4).
	Concurrency int
	// Now returns the creation time (default time.Now).
	Now func() time.Time
	// Progress receives one line per source fetched; nil is quiet.
	Progress io.Writer
	Logger   *slog.Logger
}

// Result describes a packed bundle.
type Result struct {
	Dir    string             `json:"dir"`
	Root   ocispec.Descriptor `json:"root"`
	Bundle *bundle.Bundle     `json:"-"`
	Signed bool               `json:"signed"`
	Blobs  int                `json:"blobs"`
	Bytes  int64              `json:"bytes"`
	// Discovery is what the spec's Flux entry points needed (nil without flux:).
	Discovery *discover.Result `json:"discovery,omitempty"`
}

// Pack fetches every source of the spec into a layout at o.Dir and writes a complete,
// signed bundle there. On error the folder holds no index.json and must not be used.
func Pack(ctx context.Context, o Options) (*Result, error) {
	if o.Spec == nil {
		return nil, fmt.Errorf("pack: no spec")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fo := &fetch.Options{}
	if o.Fetch != nil {
		c := *o.Fetch
		fo = &c
	}
	if fo.Logger == nil {
		fo.Logger = logger
	}
	if len(fo.Upstreams) == 0 {
		fo.Upstreams = o.Spec.Upstreams
	}
	l, err := bundle.NewLayout(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	created := now().UTC().Truncate(time.Second)

	type job struct {
		name string
		// timeout bounds the source's whole fetch; 0 is none (the cluster folder is local).
		timeout time.Duration
		run     func(context.Context) (bundle.Item, error)
	}
	var found *discover.Result
	var items []bundle.Item
	have := map[string]bool{}
	if len(o.Spec.Flux) > 0 {
		if found, err = discover.Run(ctx, discover.Options{Spec: o.Spec, Store: l, Fetch: fo, Logger: logger}); err != nil {
			return nil, fmt.Errorf("pack: discovery: %w", err)
		}
		for _, it := range found.Items {
			items = append(items, it)
			have[it.Name] = true
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "[discovery] %s %s: %s\n", it.Kind, it.Name, it.Revision)
			}
		}
	}
	var jobs []job
	for _, g := range o.Spec.Git {
		if have[g.Name] {
			continue
		}
		jobs = append(jobs, job{"git " + g.Name, g.Deadline(), func(ctx context.Context) (bundle.Item, error) { return fetch.Git(ctx, l, g, fo) }})
	}
	for _, c := range o.Spec.Charts {
		if have[c.Name] {
			continue
		}
		jobs = append(jobs, job{"chart " + c.Name, c.Deadline(), func(ctx context.Context) (bundle.Item, error) { return fetch.Chart(ctx, l, c, fo) }})
	}
	images := o.Spec.Images
	if found != nil {
		images = append(slices.Clone(images), found.Images...)
	}
	for _, im := range images {
		jobs = append(jobs, job{"image " + im.Name, im.Deadline(), func(ctx context.Context) (bundle.Item, error) { return fetch.Image(ctx, l, im, fo) }})
	}
	if o.Spec.Cluster != nil || found != nil && len(found.Roots) > 0 {
		var roots []map[string]any
		if found != nil {
			roots = found.Roots
		}
		jobs = append(jobs, job{"cluster", 0, func(ctx context.Context) (bundle.Item, error) { return ClusterItem(ctx, l, o.Spec, roots...) }})
	}
	fetched := make([]bundle.Item, len(jobs))
	var done atomic.Int32
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	limit := o.Concurrency
	if limit <= 0 {
		limit = 4
	}
	g.SetLimit(limit)
	for i, j := range jobs {
		g.Go(func() error {
			ctx, cancel := gctx, context.CancelFunc(func() {})
			if j.timeout > 0 {
				ctx, cancel = context.WithTimeoutCause(gctx, j.timeout, errSourceTimeout)
			}
			item, err := j.run(ctx)
			deadline := errors.Is(context.Cause(ctx), errSourceTimeout)
			cancel()
			if err != nil && deadline {
				return fmt.Errorf("%s: not fetched within its timeout of %s; fix: if the upstream is sound but slow, raise the source's timeout in the spec: %w", j.name, j.timeout, err)
			}
			if err != nil {
				return err
			}
			fetched[i] = item
			if o.Progress != nil {
				mu.Lock()
				fmt.Fprintf(o.Progress, "[%d/%d] %s: %s\n", done.Add(1), len(jobs), j.name, item.Revision)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	items = append(items, fetched...)
	slices.SortFunc(items, func(a, b bundle.Item) int { return strings.Compare(a.Name, b.Name) })

	seq := o.Sequence
	if seq == 0 {
		seq = uint64(created.Unix())
	}
	b := &bundle.Bundle{Sequence: seq, Created: created, Expires: created.Add(o.Spec.Bundle.Expires.Duration), Previous: o.Previous, Items: items}
	root, _, err := b.Descriptor()
	if err != nil {
		return nil, fmt.Errorf("pack bundle %d: root: %w", seq, err)
	}
	var attachments []ocispec.Descriptor
	if o.Signer != nil {
		sig, err := signing.Sign(ctx, l, root, o.Signer)
		if err != nil {
			return nil, err
		}
		attachments = append(attachments, sig)
	} else {
		logger.Warn("bundle not signed: sync refuses unsigned bundles; pass a cosign key to sign it")
	}
	for i, raw := range o.KeyStatements {
		st, err := signing.AttachKeyStatement(ctx, l, root, raw)
		if err != nil {
			return nil, fmt.Errorf("pack bundle %d: key statement %d: %w", seq, i+1, err)
		}
		attachments = append(attachments, st)
	}
	res, err := bundle.WriteResult(ctx, l, b, attachments)
	if err != nil {
		return nil, fmt.Errorf("pack bundle %d into %s: %w", seq, o.Dir, err)
	}
	logger.Info("bundle packed", "dir", o.Dir, "root", root.Digest, "sequence", seq, "items", len(items), "blobs", res.Blobs, "bytes", res.Bytes, "signed", o.Signer != nil)
	return &Result{Dir: o.Dir, Root: root, Bundle: b, Signed: o.Signer != nil, Blobs: res.Blobs, Bytes: res.Bytes, Discovery: found}, nil
}

// Explain runs the spec's Flux discovery without packing: it fetches the Git sources and
// charts it must read into a scratch layout under dir (removed when it returns) and says
// what the entry points need.
func Explain(ctx context.Context, o Options) (*discover.Result, error) {
	if o.Spec == nil || len(o.Spec.Flux) == 0 {
		return nil, fmt.Errorf("explain: the spec has no flux: entry points to discover from")
	}
	fo := &fetch.Options{}
	if o.Fetch != nil {
		c := *o.Fetch
		fo = &c
	}
	if len(fo.Upstreams) == 0 {
		fo.Upstreams = o.Spec.Upstreams
	}
	if fo.Logger == nil {
		fo.Logger = o.Logger
	}
	dir, err := os.MkdirTemp(o.Dir, "ferry-explain-")
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := bundle.NewLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	return discover.Run(ctx, discover.Options{Spec: o.Spec, Store: l, Fetch: fo, Logger: o.Logger})
}
