//go:build ferry_faults

package cache

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// FaultsEnabled reports whether this build carries the crash hook.
const FaultsEnabled = true

func envStep(name string) int64 {
	n, _ := strconv.ParseInt(os.Getenv(name), 10, 64)
	return n
}

var (
	crashStep = envStep(CrashEnv)
	failStep  = envStep(FailEnv)
	failErrno = func() syscall.Errno {
		switch strings.ToUpper(os.Getenv(FailErrnoEnv)) {
		case "EIO":
			return syscall.EIO
		default:
			return syscall.ENOSPC
		}
	}()
)

func faultAt(n int64, op, path string) error {
	if crashStep > 0 && n == crashStep {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	if failStep > 0 && n == failStep {
		return &os.PathError{Op: op, Path: path, Err: failErrno}
	}
	return nil
}
