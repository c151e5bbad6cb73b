package serve

import (
	"fmt"
	"testing"
	"time"
)

// Per-client rate limiters do not pile up: however many addresses call, at most max are kept,
// and one idle long enough to have refilled is dropped, while a busy client keeps its limit.
func TestClientLimitersAreEvicted(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l := newClientLimiters(1, 2, 100, clock)
	for i := range 10000 {
		l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.len(); n > 100 {
		t.Fatalf("%d limiters kept after 10000 clients, want at most 100", n)
	}
	// A busy client keeps its (spent) limiter while others come and go.
	l.allow("busy")
	l.allow("busy")
	if l.allow("busy") {
		t.Fatal("a third request within the burst of 2 was allowed")
	}
	for i := range 50 {
		l.allow(fmt.Sprintf("192.0.2.%d", i))
	}
	if l.allow("busy") {
		t.Fatal("the busy client's limiter was reset by other clients")
	}
	// Idle past the refill time (burst/rate = 2s), every limiter is dropped at the next sweep.
	now = now.Add(3 * time.Second)
	l.allow("late")
	if n := l.len(); n != 1 {
		t.Fatalf("%d limiters kept after all but one went idle, want 1", n)
	}
}
