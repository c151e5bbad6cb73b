package cache

// TraceSteps makes every durable step call f (op is mkdir, create, write, sync, rename or
// remove) until the returned function is called. An error f returns fails that step: the
// operation is not done and the error is returned in its place.
func TraceSteps(f func(op, path string) error) (stop func()) {
	traceStep = f
	return func() { traceStep = nil }
}
