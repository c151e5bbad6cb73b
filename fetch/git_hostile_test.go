package fetch_test

import (
	"compress/zlib"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/bundle"
	"github.com/ferry-gitops/ferry/fetch"
	"github.com/ferry-gitops/ferry/spec"
)

// A Git server that answers the fetch with a packfile that never ends (one blob whose
// compressed content keeps coming): the fetch stops once the server has sent the source's
// byte limit, with an error naming the source and the limit, in bounded memory.
func TestGitRefusesEndlessPack(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	commit := strings.Repeat("1", 40)
	pkt := func(s string) string { return fmt.Sprintf("%04x%s", 4+len(s), s) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			fmt.Fprint(w, pkt("# service=git-upload-pack\n")+"0000"+pkt(commit+" refs/heads/main\x00ofs-delta\n")+"0000")
		case strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			fmt.Fprint(w, pkt("NAK\n"))
			hdr := []byte("PACK")
			hdr = binary.BigEndian.AppendUint32(hdr, 2)
			hdr = binary.BigEndian.AppendUint32(hdr, 1)
			// A blob (type 3) of 2^40 bytes, size as git's varint: 4 bits, then 7 per byte.
			size := uint64(1) << 40
			b := byte(3<<4) | byte(size&0x0f) | 0x80
			size >>= 4
			hdr = append(hdr, b)
			for size > 0 {
				c := byte(size & 0x7f)
				size >>= 7
				if size > 0 {
					c |= 0x80
				}
				hdr = append(hdr, c)
			}
			w.Write(hdr)
			zw, _ := zlib.NewWriterLevel(w, zlib.NoCompression)
			chunk := make([]byte, 64<<10)
			for i := range chunk {
				chunk[i] = byte(i * 7)
			}
			for r.Context().Err() == nil {
				if _, err := zw.Write(chunk); err != nil {
					return
				}
			}
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/endless.git"

	l, err := bundle.NewLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err = fetch.Git(ctx, l, spec.Git{Name: "endless", URL: url, Ref: spec.GitRef{Branch: "main"}}, &fetch.Options{GitMaxFetchSize: 16 << 20})
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("an endless packfile was accepted")
	}
	t.Logf("refused in %s, %d MiB allocated: %v", took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, err)
	for _, want := range []string{"git endless (" + url + ")", "more than 16777216 bytes", "GitMaxFetchSize"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("the fetch left %d entries in its temporary folder (%v)", len(left), err)
	}
	if took > 20*time.Second {
		t.Errorf("refused after %s", took)
	}
	if got := (after.TotalAlloc - before.TotalAlloc) >> 20; got > 256 {
		t.Errorf("the fetch allocated %d MiB for a 16 MiB limit", got)
	}
}
