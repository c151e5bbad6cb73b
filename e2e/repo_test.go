package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

// maxTrackedFile is the largest file the repository may track: anything bigger is a build
// output or data that belongs in a fixture generator.
const maxTrackedFile = 2 << 20

// No tracked file is a build output (an ELF or other executable binary, a test binary) or
// larger than 2 MiB: a clone stays small and carries sources only.
func TestNoBuildOutputsTracked(t *testing.T) {
	out, err := exec.Command("git", "-C", "..", "ls-files", "-s", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	checked := 0
	for _, rec := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		// "<mode> <object> <stage>\t<path>"
		meta, name, ok := strings.Cut(rec, "\t")
		if !ok {
			t.Fatalf("git ls-files: unexpected record %q", rec)
		}
		mode := strings.Fields(meta)[0]
		path := filepath.Join("..", name)
		fi, err := os.Lstat(path)
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if fi.Size() > maxTrackedFile {
			t.Errorf("%s: %d bytes tracked (limit %d): remove it (git rm --cached) and ignore it, or generate it in a test", name, fi.Size(), maxTrackedFile)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		head := make([]byte, 4)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := f.Read(head)
		f.Close()
		head = head[:n]
		binary := bytes.HasPrefix(head, []byte("\x7fELF")) || bytes.HasPrefix(head, []byte("MZ")) ||
			bytes.HasPrefix(head, []byte{0xcf, 0xfa, 0xed, 0xfe})
		if binary {
			t.Errorf("%s: an executable binary is tracked: remove it (git rm --cached) and ignore it", name)
		}
		if mode == "100755" && !bytes.HasPrefix(head, []byte("#!")) {
			t.Errorf("%s: tracked as executable (mode %s) but is not a script: a build output? (git rm --cached, or chmod -x)", name, mode)
		}
		if strings.HasSuffix(name, ".test") || name == "sync" || name == "mirror" {
			t.Errorf("%s: a build output is tracked", name)
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d files: the listing went wrong", checked)
	}
}

// The binaries users run carry no crash hook: a sync built as `make build` builds it (no
// ferry_faults tag) ignores FERRY_CACHE_CRASH_AT and imports the whole bundle, while the test
// build dies at the first durable step.
func TestShippedSyncHasNoCrashHook(t *testing.T) {
	dir := t.TempDir()
	shipped := filepath.Join(dir, "shipped")
	build := exec.Command("go", "build", "-o", shipped+string(os.PathSeparator), "../cmd/sync")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/sync: %v\n%s", err, out)
	}
	sign := signer(t, dir)
	b := wideBundle(t, 1, "", 2, sign)
	crash := []string{cache.CrashEnv + "=" + strconv.Itoa(1)}

	if r := run(t, dir, crash, "sync", "import", "--cache", filepath.Join(dir, "test-build"), "--key", "ops.pub", b.Dir); r.Err == nil {
		t.Fatal("the ferry_faults test build imported despite the crash hook: the test proves nothing")
	}
	r := testenv.Run(t, dir, crash, filepath.Join(shipped, "sync"), "import", "--cache", filepath.Join(dir, "shipped-cache"), "--key", "ops.pub", b.Dir)
	if r.Err != nil {
		t.Fatalf("the shipped sync honoured %s (it must not carry the hook): %v\n%s", cache.CrashEnv, r.Err, r.Stderr)
	}
}
