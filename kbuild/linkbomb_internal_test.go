package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// A source tree of nested folder links (each level two links to the level below, 30 levels: a
// few kilobytes that a checkout expands to 2^30 copies of one file) is refused when the tree
// it expands to passes the archive's entry limit, with an error naming the link and the limit,
// in bounded time and memory, and nothing of it is written into the build's file system.
func TestNestedLinkBombIsRefused(t *testing.T) {
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	body := bytes.Repeat([]byte("# padding\n"), 100)
	tw.WriteHeader(&tar.Header{Name: "d00/", Mode: 0o755, Typeflag: tar.TypeDir})
	tw.WriteHeader(&tar.Header{Name: "d00/cm.yaml", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	const levels = 30
	for i := 1; i <= levels; i++ {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%02d/", i), Mode: 0o755, Typeflag: tar.TypeDir})
		for _, l := range []string{"a", "b"} {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%02d/%s", i, l), Linkname: fmt.Sprintf("../d%02d", i-1), Typeflag: tar.TypeSymlink})
		}
	}
	tw.Close()
	zw.Close()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fsys := filesys.MakeFsInMemory()
	err := ExtractTarGz(bytes.NewReader(tgz.Bytes()), fsys, "/src")
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatalf("a tree of %d nested folder links was extracted", levels)
	}
	for _, want := range []string{"link d", fmt.Sprintf("more than %d entries", maxTreeEntries), "link files, not folders"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took > 20*time.Second {
		t.Errorf("refusing the link bomb took %s", took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<30 {
		t.Errorf("refusing the link bomb allocated %d MiB", alloc>>20)
	}
	if fsys.Exists("/src/d00/cm.yaml") {
		t.Error("a refused tree was written into the build's file system")
	}
	t.Logf("refused in %s: %v", took, err)
}
