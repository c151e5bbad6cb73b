package medium_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
	"github.com/ferry-gitops/ferry/verify"
)

// splitWithout writes f as parts of partSize bytes in a new directory and removes every part
// but the first: a read that opens any other part fails on it (check "part", "missing").
func splitWithout(t *testing.T, f *testbundle.Fixture, partSize int64) medium.Location {
	t.Helper()
	dir := t.TempDir()
	loc := medium.Parts(dir, "b1.tar")
	w, err := medium.Write(context.Background(), loc.Split(partSize), f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Parts.Parts) < 3 {
		t.Fatalf("%d parts; the test wants at least 3", len(w.Parts.Parts))
	}
	for _, p := range w.Parts.Parts[1:] {
		if err := os.Remove(filepath.Join(dir, p.Name)); err != nil {
			t.Fatal(err)
		}
	}
	return loc
}

func policyOf(s *testbundle.Signer) verify.Policy {
	return verify.Policy{Keys: []verify.TrustedKey{s.Key("ops")}, Now: func() time.Time { return testbundle.Created.Add(time.Hour) }}
}

// A bundle split into parts and refused by its signature (decided in part 1) is not read
// further: no other part is opened (here they are missing, so opening one would turn the
// refusal into a missing part), the refusal is the signature's, and the cache is unchanged.
func TestPartsRejectedInFirstPartReadNoFurther(t *testing.T) {
	ctx := context.Background()
	pinned, stranger := testbundle.NewSigner(t), testbundle.NewSigner(t)
	f := testbundle.New(t, 1, "", stranger.Sign)
	loc := splitWithout(t, f, 16<<10)
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return medium.Read(ctx, loc, medium.WithReadOptions(opts...))
	}, policyOf(pinned))
	e, ok := bundle.AsError(err)
	if !ok || e.Check != bundle.CheckSignature || strings.Contains(err.Error(), "missing") {
		t.Fatalf("import of a bundle signed by another key: %v, want a signature rejection that read no other part", err)
	}
	if st, err := c.State(); err != nil || st.Sequence != 0 {
		t.Fatalf("state after the rejection: %+v %v", st, err)
	}
}

// Cancelling the context in the middle of a read (Ctrl-C) returns the cancellation at once:
// no other part is opened, none is drained.
func TestPartsReadStopsOnCancel(t *testing.T) {
	pinned := testbundle.NewSigner(t)
	f := testbundle.New(t, 1, "", pinned.Sign)
	loc := splitWithout(t, f, 16<<10)
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	stop := bundle.WithObserver(func(e bundle.Entry) {
		if e.Item != bundle.ItemRoot && e.Item != bundle.ItemAttachment && cancelled.IsZero() {
			cancelled = time.Now()
			cancel() // the first item's entry: past the root and its signatures
		}
	})
	_, err = c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
		return medium.Read(ctx, loc, medium.WithReadOptions(append(opts, stop)...))
	}, policyOf(pinned))
	took := time.Since(cancelled)
	if cancelled.IsZero() {
		t.Fatalf("the read never reached an item: %v", err)
	}
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "missing") {
		t.Fatalf("a cancelled read returned %v, want context.Canceled without reading another part", err)
	}
	if took > 2*time.Second {
		t.Fatalf("a cancelled read returned %s after the cancellation", took)
	}
	if st, err := c.State(); err != nil || st.Sequence != 0 {
		t.Fatalf("state after the cancellation: %+v %v", st, err)
	}
}

// A registry whose tag list's Link header points at itself: listing the repository ends
// with an error that says the listing ran past its page limit, after a bounded number of
// requests, instead of looping until the context ends.
func TestRegistryTagListSelfLinkIsBounded(t *testing.T) {
	var pages atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			n := pages.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Link", `</v2/ferry/bundles/tags/list?n=1&last=t>; rel="next"`)
			fmt.Fprintf(w, `{"name":"ferry/bundles","tags":["t%d"]}`, n)
		default:
			http.NotFound(w, r)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = medium.List(ctx, medium.Repository(host+"/ferry/bundles"), medium.WithPlainHTTP(host))
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "registry "+host+"/ferry/bundles") || !strings.Contains(err.Error(), "pages") {
		t.Fatalf("listing a registry whose tag list never ends: %v (after %d pages), want an error naming the repository and the page limit", err, pages.Load())
	}
	if n := pages.Load(); n > medium.MaxListPages+1 {
		t.Fatalf("the listing fetched %d pages, more than the limit %d", n, medium.MaxListPages)
	}
}

// A tar read from a named pipe whose writer stalls in the middle of a blob: cancelling the
// context returns the cancellation at once, though the read is blocked on the pipe.
func TestTarReadStopsOnCancel(t *testing.T) {
	pinned := testbundle.NewSigner(t)
	f := testbundle.New(t, 1, "", pinned.Sign)
	data := f.Tar(t)
	fifo := filepath.Join(t.TempDir(), "b1.tar")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	stall := make(chan struct{})
	defer close(stall)
	go func() {
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		w.Write(data[:len(data)/2]) // into the bundle's largest blob; then nothing until the test ends
		<-stall
	}()
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Import(ctx, func(opts ...bundle.ReadOption) (*bundle.Result, error) {
			return medium.Read(ctx, medium.TarFile(fifo), medium.WithReadOptions(opts...))
		}, policyOf(pinned))
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // the reader is blocked on the pipe
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled read returned %v, want context.Canceled", err)
		}
		if _, ok := bundle.AsError(err); ok {
			t.Fatalf("a cancelled read was taken for a rejection: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a read blocked on its medium did not return within 3s of the cancellation")
	}
	if st, err := c.State(); err != nil || st.Sequence != 0 {
		t.Fatalf("state after the cancellation: %+v %v", st, err)
	}
}

// A registry whose referrers listing's Link header points at itself (here a Distribution
// registry behind a loopback proxy that answers the referrers API so): reading a bundle
// from it ends with an error naming the registry, the root's referrers and the page limit,
// after a bounded number of pages, instead of looping until the context ends.
func TestRegistryReferrersSelfLinkIsBounded(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := testenv.NewRegistry(t)
	f := testbundle.New(t, 1, "", testbundle.NewSigner(t).Sign)
	if _, err := medium.Write(ctx, medium.Registry(reg.Host+"/ferry/bundles", "b1"), f.Dir, medium.WithPlainHTTP(reg.Host)); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("http://" + reg.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var pages atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			pages.Add(1)
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			w.Header().Set("Link", "<"+r.URL.Path+`?next=1>; rel="next"`)
			io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	host := l.Addr().String()
	_, err = medium.Read(ctx, medium.Registry(host+"/ferry/bundles", "b1"), medium.WithPlainHTTP(host))
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "registry "+host+"/ferry/bundles:b1") || !strings.Contains(err.Error(), "referrers of root "+string(f.Root.Digest)) || !strings.Contains(err.Error(), "pages") {
		t.Fatalf("reading from a registry whose referrers never end: %v (after %d pages), want an error naming the registry, the referrers and the page limit", err, pages.Load())
	}
	if n := pages.Load(); n > medium.MaxListPages+1 {
		t.Fatalf("the read fetched %d pages of referrers, more than the limit %d", n, medium.MaxListPages)
	}
}

// WithStallTimeout stops a read once the medium sent nothing for the timeout, as the medium's
// failure (no verdict, nothing imported), and lets a slow medium that keeps sending finish even
// when the whole read takes longer than the timeout.
func TestReadStopsOnStall(t *testing.T) {
	pinned := testbundle.NewSigner(t)
	f := testbundle.New(t, 1, "", pinned.Sign)
	data := f.Tar(t)
	const stallAfter = 400 * time.Millisecond
	for _, tc := range []struct {
		name  string
		write func(w *os.File, stop <-chan struct{})
		stall bool
	}{
		{"stalls halfway", func(w *os.File, stop <-chan struct{}) {
			w.Write(data[:len(data)/2])
			<-stop
		}, true},
		{"slow but steady", func(w *os.File, stop <-chan struct{}) {
			for off := 0; off < len(data); off += 2 << 10 {
				w.Write(data[off:min(off+2<<10, len(data))])
				select {
				case <-stop:
					return
				case <-time.After(stallAfter / 8):
				}
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "b1.tar")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				defer w.Close()
				tc.write(w, stop)
			}()
			c, err := cache.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				_, err := c.Import(context.Background(), func(opts ...bundle.ReadOption) (*bundle.Result, error) {
					return medium.Read(context.Background(), medium.TarFile(fifo), medium.WithStallTimeout(stallAfter), medium.WithReadOptions(opts...))
				}, policyOf(pinned))
				done <- err
			}()
			var got error
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the read did not end within 10s")
			}
			took := time.Since(start)
			st, err := c.State()
			if err != nil {
				t.Fatal(err)
			}
			if !tc.stall {
				if got != nil || st.Sequence != 1 {
					t.Fatalf("a slow medium that kept sending (%s in all, stall timeout %s): %v, state %d", took, stallAfter, got, st.Sequence)
				}
				if took <= stallAfter {
					t.Fatalf("the slow read took %s, not longer than the stall timeout: it proves nothing", took)
				}
				return
			}
			var me *medium.Error
			if !errors.As(got, &me) || !errors.Is(got, medium.ErrStalled) {
				t.Fatalf("a stalled medium: %v, want a *medium.Error wrapping ErrStalled", got)
			}
			if _, ok := bundle.AsError(got); ok && me == nil {
				t.Fatalf("a stall was taken for a rejection: %v", got)
			}
			if st.Sequence != 0 {
				t.Fatalf("state after the stall: %+v", st)
			}
			t.Logf("stopped after %s: %v", took.Truncate(time.Millisecond), got)
		})
	}
}
