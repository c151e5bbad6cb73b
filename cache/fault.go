package cache

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// CrashEnv names the variable that makes a process kill itself (SIGKILL) just before its Nth
// durable step in the cache (create, write, sync, rename, remove): how the crash tests stop an
// import at every point without a debugger. Unset, steps cost one atomic add.
const CrashEnv = "FERRY_CACHE_CRASH_AT"

var (
	crashAt = func() int64 {
		n, _ := strconv.ParseInt(os.Getenv(CrashEnv), 10, 64)
		return n
	}()
	steps atomic.Int64
)

// step marks a durable step; with CrashEnv set it dies at the chosen one, as a power cut would.
func step() {
	if n := steps.Add(1); crashAt > 0 && n == crashAt {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// Steps returns how many durable steps this process has taken, for tests that plan crashes.
func Steps() int64 { return steps.Load() }
