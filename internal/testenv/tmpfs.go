package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// MountTmpfs mounts a small tmpfs at dir (made if missing) with the mount options opts (such as
// "size=8m,nr_inodes=400") for the test, unmounted when it ends: a real disk a test can fill.
// It needs root, as CI has.
func MountTmpfs(t testing.TB, dir, opts string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting a small tmpfs needs root (CI runs the tests as root)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

// FillInodes takes every free inode of the filesystem holding dir but free of them, with empty
// files in a folder dir/fill-inodes, and returns the function that frees them all again.
func FillInodes(t testing.TB, dir string, free int) func() {
	t.Helper()
	fill := filepath.Join(dir, "fill-inodes")
	if err := os.Mkdir(fill, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		f, err := os.Create(filepath.Join(fill, fmt.Sprint(n)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		f.Close()
	}
	if n < free {
		t.Fatalf("only %d inodes were free under %s; the test needs %d", n, dir, free)
	}
	for i := range free {
		if err := os.Remove(filepath.Join(fill, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		if err := os.RemoveAll(fill); err != nil {
			t.Fatal(err)
		}
	}
}
