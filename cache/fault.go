package cache

import "sync/atomic"

// CrashEnv names the variable that makes a test build kill itself (SIGKILL) just before its
// Nth durable step in the cache (create, write, sync, rename, remove, mkdir): how the crash
// tests stop an import at every point without a debugger. Only a binary built with the build
// tag ferry_faults reads it (cache/fault_on.go); the shipped binaries have no such hook, and a
// step costs them one atomic add.
const CrashEnv = "FERRY_CACHE_CRASH_AT"

// FailEnv names the variable that makes a test build fail its Nth durable step with the error
// FailErrnoEnv names (ENOSPC, the default, or EIO), as a full or broken disk would: the step's
// operation is not done and returns an *os.PathError naming its path. Like CrashEnv, only a
// ferry_faults build reads it.
const (
	FailEnv      = "FERRY_CACHE_FAIL_AT"
	FailErrnoEnv = "FERRY_CACHE_FAIL_ERRNO"
)

// FaultsTag is the build tag that compiles the crash hook in.
const FaultsTag = "ferry_faults"

var steps atomic.Int64

// traceStep, when set (by this package's tests), sees every durable step; an error it returns
// is the step's, as FailEnv's is.
var traceStep func(op, path string) error

// step marks a durable step (op on path) just before it is taken; in a ferry_faults build it
// dies at the step CrashEnv names, as a power cut would, or returns the error FailEnv asks for
// instead of taking it.
func step(op, path string) error {
	n := steps.Add(1)
	if traceStep != nil {
		if err := traceStep(op, path); err != nil {
			return err
		}
	}
	return faultAt(n, op, path)
}

// Steps returns how many durable steps this process has taken, for tests that plan crashes.
func Steps() int64 { return steps.Load() }
