package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// RunPeak runs cmd to completion and returns its peak resident memory in KiB, read from the
// process's own high-water mark (VmHWM in /proc/PID/status), sampled every 10 ms until it exits.
// (The rusage of a child started by a Go program also counts the parent's memory at the fork,
// so it cannot be used to measure a small child of a large test process.)
func RunPeak(cmd *exec.Cmd) (int64, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var peak int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if kib := vmHWM(status); kib > peak {
			peak = kib
		}
		select {
		case err := <-done:
			return peak, err
		case <-tick.C:
		}
	}
}

func vmHWM(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
