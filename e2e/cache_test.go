package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testbundle"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

// signer makes a key pair, writes its public half as dir/ops.pub, and returns a SignFunc.
func signer(t *testing.T, dir string) testbundle.SignFunc {
	t.Helper()
	s := testbundle.NewSigner(t)
	if err := os.WriteFile(filepath.Join(dir, "ops.pub"), s.PublicPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return s.Sign
}

// wideBundle is a bundle with many items, so an import takes many durable steps.
func wideBundle(t *testing.T, seq uint64, prev digest.Digest, items int, sign testbundle.SignFunc) *testbundle.Fixture {
	f := testbundle.New(t, seq, prev, nil)
	for i := range items {
		d := testbundle.Artifact(t, f.Layout, ocispec.MediaTypeImageConfig, map[string][]byte{
			ocispec.MediaTypeImageLayer: fmt.Appendf(nil, "bundle %d item %d: %s", seq, i, strings.Repeat("x", 4096)),
		}, nil)
		f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: fmt.Sprintf("item-%02d", i), Kind: bundle.KindArtifact, Source: "x", Revision: fmt.Sprint(seq), Descriptor: d})
	}
	f.Write(t, sign)
	return f
}

// cacheView is a cache's content for comparison: every blob, the state, the records (less the
// time each was accepted), and whether staging is empty.
func cacheView(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "lock" {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "refs/bundles/") {
			var r cache.Record
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			r.Accepted = time.Time{}
			b, _ = json.Marshal(r)
		}
		out = append(out, rel+" "+string(digest.FromBytes(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// SIGKILL at every durable step of an import: after each, fsck passes and the cache is exactly
// as it was before the import or as it is after it.
func TestImportSurvivesKillAtEveryStep(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 3, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 30, sign)
	before := filepath.Join(dir, "before")
	must(t, dir, nil, "sync", "import", "--cache", before, "--key", "ops.pub", b1.Dir)
	after := filepath.Join(dir, "after")
	os.MkdirAll(after, 0o755)
	copyDir(t, before, after)
	must(t, dir, nil, "sync", "import", "--cache", after, "--key", "ops.pub", b2.Dir)
	wantBefore, wantAfter := cacheView(t, before), cacheView(t, after)
	if wantBefore == wantAfter {
		t.Fatal("the import changed nothing; the test would prove nothing")
	}

	tried, asBefore, asAfter := 0, 0, 0
	for n := 1; ; n++ {
		work := filepath.Join(dir, fmt.Sprintf("crash-%d", n))
		os.MkdirAll(work, 0o755)
		copyDir(t, before, work)
		r := run(t, dir, []string{fmt.Sprintf("%s=%d", cache.CrashEnv, n)}, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
		if r.Err == nil {
			break // the import has fewer steps than n: every step was tried
		}
		var ee *exec.ExitError
		if !asExit(r.Err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("step %d: import failed without being killed: %v\n%s", n, r.Err, r.Stderr)
		}
		tried++
		// Opening the cache (as fsck does) recovers; fsck then proves it whole.
		must(t, dir, nil, "sync", "fsck", "--cache", work)
		switch cacheView(t, work) {
		case wantBefore:
			asBefore++
		case wantAfter:
			asAfter++
		default:
			t.Fatalf("killed at step %d: the cache is neither as before nor as after the import:\n%s", n, cacheView(t, work))
		}
		os.RemoveAll(work)
	}
	t.Logf("killed sync import at %d points (every durable step): fsck passed each time; the cache was as before %d times, as after %d times", tried, asBefore, asAfter)
	if tried < 100 {
		t.Fatalf("only %d kill points; the import must be tried at 100 or more", tried)
	}
	if asAfter == 0 || asBefore == 0 {
		t.Fatal("the kill points did not cover both sides of the commit")
	}
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// Importing a bundle of 4 GiB keeps the importer's peak memory far below its size.
func TestImportLargeBundleInBoundedMemory(t *testing.T) {
	const layers, layerSize = 4, 1 << 30
	dir := t.TempDir()
	sign := signer(t, dir)
	f := testbundle.New(t, 1, "", nil)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: testbundle.Push(t, f.Layout, ocispec.MediaTypeImageConfig, []byte(`{"large":true}`))}
	m.Versioned.SchemaVersion = 2
	start := time.Now()
	for i := range layers {
		// A deterministic stream: hash it once to name it, then push it (hashed again as written).
		d := digest.SHA256.Digester()
		if _, err := io.Copy(d.Hash(), layerStream(i, layerSize)); err != nil {
			t.Fatal(err)
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d.Digest(), Size: layerSize}
		if err := f.Layout.Push(context.Background(), desc, layerStream(i, layerSize)); err != nil {
			t.Fatal(err)
		}
		m.Layers = append(m.Layers, desc)
	}
	raw, _ := json.Marshal(m)
	big := testbundle.Push(t, f.Layout, ocispec.MediaTypeImageManifest, raw)
	f.Bundle.Items = append(f.Bundle.Items, bundle.Item{Name: "large", Kind: bundle.KindImage, Source: "generated", Revision: string(big.Digest), Descriptor: big})
	f.Write(t, sign)
	t.Logf("generated a bundle of %d GiB in %.1fs", layers*layerSize>>30, time.Since(start).Seconds())

	cacheDir := filepath.Join(dir, "cache")
	cmd := exec.Command(filepath.Join(bin, "sync"), "import", "--cache", cacheDir, "--key", "ops.pub", "--output", "json", f.Dir)
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start = time.Now()
	rss, err := testenv.RunPeak(cmd) // KiB, the process's own high-water mark
	if err != nil {
		t.Fatalf("sync import: %v\n%s", err, stderr.String())
	}
	elapsed := time.Since(start)
	out := []byte(stdout.String())
	var res cache.ImportResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.NewBytes < layers*layerSize {
		t.Fatalf("imported %d bytes, want at least %d", res.NewBytes, layers*layerSize)
	}
	t.Logf("sync import of %.2f GiB: peak RSS %.1f MiB, %.1fs (%.0f MiB/s, hashed and fsynced)", float64(res.NewBytes)/(1<<30), float64(rss)/1024, elapsed.Seconds(), float64(res.NewBytes)/(1<<20)/elapsed.Seconds())
	if rss > 100*1024 {
		t.Fatalf("peak RSS %d KiB: over 100 MiB", rss)
	}
}

// layerStream is n bytes of deterministic pseudo-random data, different for each i.
func layerStream(i int, n int64) io.Reader {
	return io.LimitReader(mrand.NewChaCha8([32]byte{byte(i), 'f', 'e', 'r', 'r', 'y'}), n)
}
