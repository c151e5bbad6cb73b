package cache

import "sync/atomic"

// CrashEnv names the variable that makes a test build kill itself (SIGKILL) just before its
// Nth durable step in the cache (create, write, sync, rename, remove): how the crash tests stop
// an import at every point without a debugger. Only a binary built with the build tag
// ferry_faults reads it (cache/fault_on.go); the shipped binaries have no such hook, and a
// step costs them one atomic add.
const CrashEnv = "FERRY_CACHE_CRASH_AT"

// FaultsTag is the build tag that compiles the crash hook in.
const FaultsTag = "ferry_faults"

var steps atomic.Int64

// step marks a durable step; in a ferry_faults build with CrashEnv set it dies at the chosen
// one, as a power cut would.
func step() { crashAt(steps.Add(1)) }

// Steps returns how many durable steps this process has taken, for tests that plan crashes.
func Steps() int64 { return steps.Load() }
