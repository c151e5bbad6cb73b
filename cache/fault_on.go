//go:build ferry_faults

package cache

import (
	"os"
	"strconv"
	"syscall"
)

// FaultsEnabled reports whether this build carries the crash hook.
const FaultsEnabled = true

var crashStep = func() int64 {
	n, _ := strconv.ParseInt(os.Getenv(CrashEnv), 10, 64)
	return n
}()

func crashAt(n int64) {
	if crashStep > 0 && n == crashStep {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
