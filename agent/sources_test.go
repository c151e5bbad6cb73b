package agent_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/agent"
	"github.com/ferry-gitops/ferry/internal/testenv"
	"github.com/ferry-gitops/ferry/medium"
)

// A bucket prefix and a registry repository each deliver a bundle: bundle 1 as parts in
// MinIO, bundle 2 in a Distribution registry. The registry also holds bundle 1 (tag b1) and
// bundle 2 again (tag latest), and the signature tags: each bundle is imported once, in order,
// and nothing is rejected. A repository nothing was pushed to yet is an empty source.
func TestS3AndRegistrySources(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "agent-remote")
	minio := testenv.NewMinIO(t)
	reg := testenv.NewRegistry(t)
	t.Setenv("AWS_ACCESS_KEY_ID", minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", minio.SecretKey)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	bucket, err := minio.MakeBucket(ctx, "bundles")
	if err != nil {
		t.Fatal(err)
	}
	client, err := minio.Client()
	if err != nil {
		t.Fatal(err)
	}
	b1 := h.bundle(1, "")
	b2 := h.bundle(2, b1.Root.Digest)
	if _, err := medium.Write(ctx, medium.S3(bucket, "site-a", "b1").Split(8<<10), b1.Dir, medium.WithS3Client(client)); err != nil {
		t.Fatal(err)
	}
	for tag, dir := range map[string]string{"b2": b2.Dir, "latest": b2.Dir, "b1": b1.Dir} {
		if _, err := medium.Write(ctx, medium.Registry(reg.Host+"/ferry/bundles", tag), dir, medium.WithPlainHTTP(reg.Host)); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg.Sources = []agent.SourceConfig{
		{S3: &agent.S3Source{Endpoint: minio.Endpoint, Bucket: bucket, Prefix: "site-a/", Insecure: true}},
		{Registry: &agent.RegistrySource{Repository: reg.Host + "/ferry/bundles", PlainHTTP: true}},
		{Registry: &agent.RegistrySource{Repository: reg.Host + "/ferry/nothing-yet", PlainHTTP: true}},
	}
	r := h.start(agent.Options{})
	waitFor(t, 20*time.Second, "bundle 2 accepted", func() bool { return h.state().Sequence == 2 })
	if h.state().Root != b2.Root.Digest {
		t.Fatalf("current %+v, want bundle 2's root %s", h.state(), b2.Root.Digest)
	}
	time.Sleep(500 * time.Millisecond) // a few more polls
	if got := r.loggedAccepted(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("accepted %v, want [1 2] once each", got)
	}
	if v, ok := r.metric(`ferry_source_errors_total{source="registry ` + reg.Host + `/ferry/nothing-yet"}`); ok {
		t.Fatalf("a repository nothing was pushed to yet counts %v errors; it is an empty source", v)
	}
	if len(h.rejections()) != 0 || r.value("ferry_bundles_accepted_total") != 2 {
		t.Fatalf("rejections %+v, accepted %v", h.rejections(), r.value("ferry_bundles_accepted_total"))
	}
	// Bundle 1 came from the first source that offered it: the bucket (sources in order).
	if !strings.Contains(r.logs.String(), `"msg":"bundle accepted","source":"s3://bundles/site-a at `) {
		t.Fatalf("bundle 1 was not imported from the bucket:\n%s", r.logs.String())
	}
}

// An S3 endpoint that fails in the middle of an import (here: refuses the last part, as a
// bucket policy or credentials gone wrong would) is a transient failure: retried with backoff,
// counted as a source error, never a rejection, although the bundle reader sees missing parts; once the endpoint recovers the
// bundle is accepted. A part read broken off midway is retried too (minio-go retries those
// itself first).
func TestTransientMediumErrorsAreRetried(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, "agent-transient")
	minio := testenv.NewMinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", minio.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", minio.SecretKey)
	bucket, err := minio.MakeBucket(ctx, "bundles")
	if err != nil {
		t.Fatal(err)
	}
	client, err := minio.Client()
	if err != nil {
		t.Fatal(err)
	}
	w, err := medium.Write(ctx, medium.S3(bucket, "", "b1").Split(8<<10), h.bundle(1, "").Dir, medium.WithS3Client(client))
	if err != nil {
		t.Fatal(err)
	}
	list := w.Parts
	lastPart := list.Parts[len(list.Parts)-1].Name
	if len(list.Parts) < 3 {
		t.Fatalf("%d parts; the test wants at least 3", len(list.Parts))
	}
	// A proxy in front of MinIO: while broken, it refuses the last part (so the root, at the
	// start, reads, and the import fails part-way); it also cuts the first reads of
	// a part after 100 bytes.
	target, _ := url.Parse("http://" + minio.Endpoint)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	var broken atomic.Bool
	broken.Store(true)
	var refused, cut atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() && strings.HasSuffix(r.URL.Path, "/"+lastPart) {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	})
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, ".part-") && cut.Add(1) <= 2 {
			resp.Body = &cutBody{r: resp.Body, left: 100}
		}
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	source := "s3://bundles at " + l.Addr().String()
	errorsMetric := `ferry_source_errors_total{source="` + source + `"}`
	h.cfg.Sources = []agent.SourceConfig{{S3: &agent.S3Source{Endpoint: l.Addr().String(), Bucket: bucket, Insecure: true}}}
	r := h.start(agent.Options{})
	waitFor(t, 20*time.Second, "three failed attempts", func() bool { return r.value(errorsMetric) >= 3 })
	if st := h.state(); st.Sequence != 0 || len(h.rejections()) != 0 || r.value(`ferry_bundles_rejected_total{check="part"}`) != 0 || r.value(`ferry_bundles_rejected_total{check="missing"}`) != 0 {
		t.Fatalf("a failing medium changed the cache or was taken for a rejection: state %+v, rejections %+v", st, h.rejections())
	}
	if !strings.Contains(r.logs.String(), "import failed; retrying") || !strings.Contains(r.logs.String(), "AccessDenied") && !strings.Contains(r.logs.String(), "Access Denied") {
		t.Fatalf("the log does not say what failed and that it is retried:\n%s", r.logs.String())
	}
	broken.Store(false)
	waitFor(t, 20*time.Second, "bundle 1 accepted after the medium recovered", func() bool { return h.state().Sequence == 1 })
	if refused.Load() < 3 || cut.Load() < 2 {
		t.Fatalf("the proxy refused %d and cut %d part requests", refused.Load(), cut.Load())
	}
	if len(h.rejections()) != 0 || strings.Contains(r.logs.String(), "bundle rejected") {
		t.Fatalf("a failing medium was taken for a rejection: %+v", h.rejections())
	}
}

// cutBody returns left bytes, then fails as a connection that broke.
type cutBody struct {
	r    io.ReadCloser
	left int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("connection cut by the test")
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func (c *cutBody) Close() error { return c.r.Close() }
