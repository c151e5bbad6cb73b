package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-gitops/ferry/cache"
	"github.com/ferry-gitops/ferry/internal/testenv"
)

// faultCaches imports b1 into a cache ("before") and b2 on top of a copy of it ("after"), and
// returns their views.
func faultCaches(t *testing.T, dir string, b1, b2 string) (before, wantBefore, wantAfter string) {
	t.Helper()
	before = filepath.Join(dir, "before")
	must(t, dir, nil, "sync", "import", "--cache", before, "--key", "ops.pub", b1)
	after := filepath.Join(dir, "after")
	os.MkdirAll(after, 0o755)
	copyDir(t, before, after)
	must(t, dir, nil, "sync", "import", "--cache", after, "--key", "ops.pub", b2)
	wantBefore, wantAfter = cacheView(t, before), cacheView(t, after)
	if wantBefore == wantAfter {
		t.Fatal("the import changed nothing; the test would prove nothing")
	}
	return before, wantBefore, wantAfter
}

// ENOSPC or EIO at every durable step of an import (the fault hook's FERRY_CACHE_FAIL_AT, the
// same step count as the SIGKILL test): a failed import names the disk and the path, leaves the
// cache exactly as before (every file hashed), fsck passes, and the next import succeeds. A fault
// after the commit point (the state's rename) is redone by the same recovery and the import
// succeeds, leaving the cache exactly as after.
func TestImportDiskErrorAtEveryStepChangesNothing(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 2, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 6, sign)
	before, wantBefore, wantAfter := faultCaches(t, dir, b1.Dir, b2.Dir)
	for _, errno := range []struct{ name, text string }{{"ENOSPC", "no space left on device"}, {"EIO", "input/output error"}} {
		t.Run(errno.name, func(t *testing.T) {
			failed, forward := 0, 0
			for n := 1; ; n++ {
				work := filepath.Join(dir, fmt.Sprintf("%s-%d", errno.name, n))
				os.MkdirAll(work, 0o755)
				copyDir(t, before, work)
				env := []string{fmt.Sprintf("%s=%d", cache.FailEnv, n), cache.FailErrnoEnv + "=" + errno.name}
				r := run(t, dir, env, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
				got := cacheView(t, work)
				if r.Err == nil {
					if got != wantAfter {
						t.Fatalf("%s at step %d: the import succeeded but the cache is not as after it:\n%s\n%s", errno.name, n, got, r.Stderr)
					}
					if !strings.Contains(r.Stderr, "redone") {
						break // no step n: every step was tried
					}
					forward++
				} else {
					failed++
					for _, want := range []string{"the disk holding the cache " + work, errno.text, work + "/"} {
						if !strings.Contains(r.Stderr, want) {
							t.Fatalf("%s at step %d: the error does not say %q:\n%s", errno.name, n, want, r.Stderr)
						}
					}
					if got != wantBefore {
						t.Fatalf("%s at step %d: the failed import changed the cache:\n%s\nerror: %s", errno.name, n, got, r.Stderr)
					}
				}
				must(t, dir, nil, "sync", "fsck", "--cache", work)
				if r.Err != nil {
					must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
					if cacheView(t, work) != wantAfter {
						t.Fatalf("%s at step %d: the next import did not leave the cache as after it", errno.name, n)
					}
				}
				os.RemoveAll(work)
			}
			t.Logf("%s at every durable step: %d imports failed (cache as before, fsck whole, next import fine), %d faults after the commit point redone", errno.name, failed, forward)
			if failed < 30 || forward == 0 {
				t.Fatalf("%d failing steps and %d after the commit point: the steps did not cover the import", failed, forward)
			}
		})
	}
}

// A real full filesystem: the cache on a small tmpfs the test mounts, filled up. The import fails
// naming the disk, the cache is as before and fsck passes; once space is freed the next import
// succeeds.
func TestImportOnFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting a small tmpfs needs root (CI runs the tests as root)")
	}
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 2, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 30, sign)
	disk := filepath.Join(dir, "disk")
	os.MkdirAll(disk, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", disk).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", disk, err, out)
		}
	})
	work := filepath.Join(disk, "cache")
	must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b1.Dir)
	// Fill the disk.
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'f'}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	want := cacheView(t, work)

	r := run(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
	if r.Err == nil {
		t.Fatal("the import succeeded on a full disk: the test proves nothing")
	}
	for _, s := range []string{"the disk holding the cache " + work + " is full", "no space left on device", "free space on it"} {
		if !strings.Contains(r.Stderr, s) {
			t.Fatalf("the error does not say %q:\n%s", s, r.Stderr)
		}
	}
	if got := cacheView(t, work); got != want {
		t.Fatalf("the failed import changed the cache:\n%s\nwas:\n%s", got, want)
	}
	must(t, dir, nil, "sync", "fsck", "--cache", work)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	out := must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
	if !strings.Contains(out, "bundle 2 imported") {
		t.Fatalf("after freeing space: %s", out)
	}
	must(t, dir, nil, "sync", "fsck", "--cache", work)
	t.Logf("on a full 2 MiB tmpfs: %s", strings.TrimSpace(r.Stderr))
}

// busyCPUs keeps every CPU busy until the test ends: the load under which a kill once left a
// cache fsck refused.
func busyCPUs(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range 1 << 16 {
					x = x*6364136223846793005 + 1
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// SIGKILL at random instants (not at a step: wherever the scheduler happens to be) while every
// CPU is busy. After each, fsck (which runs the writer's recovery) passes and the cache is
// exactly as before or as after the import.
func TestImportSurvivesRandomKillUnderCPULoad(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 3, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 30, sign)
	before, wantBefore, wantAfter := faultCaches(t, dir, b1.Dir, b2.Dir)
	busyCPUs(t)

	// How long an import takes under this load: kill instants are drawn from that span.
	work := filepath.Join(dir, "timed")
	os.MkdirAll(work, 0o755)
	copyDir(t, before, work)
	start := time.Now()
	must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
	span := time.Since(start)
	os.RemoveAll(work)

	const kills = 20
	asBefore, asAfter := 0, 0
	for i := range kills {
		work := filepath.Join(dir, fmt.Sprintf("kill-%d", i))
		os.MkdirAll(work, 0o755)
		copyDir(t, before, work)
		cmd := exec.Command(filepath.Join(bin, "sync"), "import", "--cache", work, "--key", "ops.pub", b2.Dir)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(mrand.Int64N(int64(span) + 1)))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		must(t, dir, nil, "sync", "fsck", "--cache", work)
		switch cacheView(t, work) {
		case wantBefore:
			asBefore++
		case wantAfter:
			asAfter++
		default:
			t.Fatalf("killed at a random instant (kill %d): the cache is neither as before nor as after the import:\n%s", i, cacheView(t, work))
		}
		os.RemoveAll(work)
	}
	t.Logf("killed sync import at %d random instants within %v under CPU load: fsck passed each time; as before %d, as after %d", kills, span, asBefore, asAfter)
}

// A real disk that fills up during the commit itself: the tmpfs runs out of inodes just after
// the blobs are staged, so the journal, the record or the state cannot be created (ENOSPC) once
// blobs may already be renamed into place. Each time the import fails naming the disk, the cache
// is exactly as before, fsck passes, and once space is freed the next import succeeds.
func TestImportCommitOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	sign := signer(t, dir)
	b1 := wideBundle(t, 1, "", 2, sign)
	b2 := wideBundle(t, 2, b1.Root.Digest, 10, sign)
	// How many blobs bundle 2 adds to a cache holding bundle 1.
	probe := filepath.Join(dir, "probe")
	must(t, dir, nil, "sync", "import", "--cache", probe, "--key", "ops.pub", b1.Dir)
	var res cache.ImportResult
	if err := json.Unmarshal([]byte(must(t, dir, nil, "sync", "import", "--cache", probe, "--key", "ops.pub", "--output", "json", b2.Dir)), &res); err != nil {
		t.Fatal(err)
	}
	wantAfter := cacheView(t, probe)
	// An import creates its staging folder and its blobs folder, one file per new blob, then the
	// journal, the record and the state (each a temporary file renamed into place).
	for extra, fails := range []string{"the journal", "the record", "the state"} {
		t.Run(strings.ReplaceAll(fails, " ", "-"), func(t *testing.T) {
			disk := filepath.Join(dir, fmt.Sprintf("disk-%d", extra))
			testenv.MountTmpfs(t, disk, "size=8m,nr_inodes=400")
			work := filepath.Join(disk, "cache")
			must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b1.Dir)
			freeDisk := testenv.FillInodes(t, disk, 2+res.New+extra)
			want := cacheView(t, work)
			r := run(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
			if r.Err == nil {
				t.Fatalf("the import succeeded with no inode left for %s: the test proves nothing", fails)
			}
			for _, s := range []string{"commit bundle 2", "the disk holding the cache " + work + " is full", "no space left on device", "the import was undone"} {
				if !strings.Contains(r.Stderr, s) {
					t.Fatalf("the error does not say %q:\n%s", s, r.Stderr)
				}
			}
			if got := cacheView(t, work); got != want {
				t.Fatalf("the failed commit changed the cache:\n%s\nwas:\n%s\nerror: %s", got, want, r.Stderr)
			}
			must(t, dir, nil, "sync", "fsck", "--cache", work)
			freeDisk()
			must(t, dir, nil, "sync", "import", "--cache", work, "--key", "ops.pub", b2.Dir)
			if got := cacheView(t, work); got != wantAfter {
				t.Fatalf("after freeing space the import did not leave the cache as after it:\n%s", got)
			}
			must(t, dir, nil, "sync", "fsck", "--cache", work)
			t.Logf("no inode for %s: %s", fails, strings.TrimSpace(r.Stderr))
		})
	}
}
