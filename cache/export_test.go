package cache

// TraceSteps makes every durable step call f (op is mkdir, create, write, sync, rename or
// remove) until the returned function is called.
func TraceSteps(f func(op, path string)) (stop func()) {
	traceStep = f
	return func() { traceStep = nil }
}
