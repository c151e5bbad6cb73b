package agent

import (
	"time"
)

// backoff spaces out retries of what failed for a transient reason (a source unreachable, a
// read that broke off): the first retry after min, each next one twice as late, at most max.
// A success forgets the failures.
type backoff struct {
	min, max time.Duration
	now      func() time.Time
	keys     map[string]*retryState
}

type retryState struct {
	failures int
	next     time.Time
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, now: time.Now, keys: map[string]*retryState{}}
}

// ready reports whether key may be tried now.
func (b *backoff) ready(key string) bool {
	s, ok := b.keys[key]
	return !ok || !b.now().Before(s.next)
}

// fail records a failure of key and returns how long until it may be tried again.
func (b *backoff) fail(key string) time.Duration {
	s, ok := b.keys[key]
	if !ok {
		s = &retryState{}
		b.keys[key] = s
	}
	s.failures++
	d := b.min
	for i := 1; i < s.failures && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	s.next = b.now().Add(d)
	return d
}

// failures returns how many times in a row key failed.
func (b *backoff) failures(key string) int {
	if s, ok := b.keys[key]; ok {
		return s.failures
	}
	return 0
}

// ok forgets key's failures.
func (b *backoff) ok(key string) { delete(b.keys, key) }
